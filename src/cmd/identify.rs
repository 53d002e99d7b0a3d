//! `redeye identify PHOTO...`: the seed article's client. The MD5 of the file's bytes keys the
//! result in Redis (`image:<md5>`): a fresh cached result answers at once. Otherwise the photo's
//! faces are detected and aligned here and their crops sent to the recognition workers through
//! the group's faces stream ([`remote`]), or, with `--local`, recognised in this process; either
//! way the result is cached with its TTL for next time.

mod remote;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use super::CommonArgs;
use crate::app;
use crate::bus::RedisConn;
use crate::config::Config;
use crate::instrument::unix_millis;
use crate::recognition::{self, CachedResult, FaceResult, RESULT_SCHEMA};
use crate::recognize::gallery;
use crate::recognize::matcher::Matcher;
use crate::vision::{BBox, FacePipeline, ImageLimits, Verdict, decode_image_bytes, read_image_file};

/// Longest `--timeout`: an hour is already a worker that is not coming.
const MAX_TIMEOUT_SECS: f64 = 3600.0;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Photos to identify (JPEG or PNG).
    #[arg(required = true)]
    pub photos: Vec<PathBuf>,
    /// The camera group whose workers recognise the faces and whose Redis node holds the cache
    /// (the node matters only with named nodes; default: the first group).
    #[arg(long)]
    pub group: Option<String>,
    /// Recognise in this process (loads the recogniser and the gallery here) instead of
    /// through the recognition workers (`redeye recognize` or `redeye run`).
    #[arg(long)]
    pub local: bool,
    /// Seconds to wait for the workers' answers to a photo (fractions allowed).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_timeout, conflicts_with = "local")]
    pub timeout: Duration,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= MAX_TIMEOUT_SECS) {
        return Err(format!("{s} s: the timeout must be above 0 and at most {MAX_TIMEOUT_SECS} s"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// One output line: one face of one photo.
#[derive(Debug, Serialize)]
struct Line<'a> {
    file: &'a Path,
    md5: &'a str,
    face: usize,
    bbox: Option<BBox>,
    person: Option<PersonRef<'a>>,
    score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected: Option<&'a str>,
    cached: bool,
}

#[derive(Debug, Serialize)]
struct PersonRef<'a> {
    id: &'a str,
    name: &'a str,
}

/// What a miss needs, loaded on the first miss only: a run answered wholly from the cache
/// never loads a model.
struct Recognizer {
    pipeline: FacePipeline,
    matcher: Matcher,
}

/// How the misses are recognised; each loaded on the first miss only, so a run answered wholly
/// from the cache loads no model.
enum Misses {
    /// In this process (`--local`).
    Local(Option<Recognizer>),
    /// By the group's recognition workers.
    /// (Boxed: its detector and connections make it by far the larger variant.)
    Workers(Option<Box<remote::Remote>>),
}

pub async fn run(common: &CommonArgs, args: Args) -> anyhow::Result<ExitCode> {
    let config = app::load_config(&common.config)?;
    let group = match &args.group {
        Some(g) => config
            .groups
            .iter()
            .find(|x| &x.name == g)
            .with_context(|| format!("no group `{g}` in {}", config.source.display()))?,
        None => config.groups.first().context("the configuration has no groups")?,
    };
    let bus = app::connect(&config).await?;
    let mut cache = bus.group(&group.name);
    let mut shared = bus.shared();
    let model = config.recognizer.id.clone();
    let version = gallery::version(&mut shared, bus.keys()).await?;
    let finisher = recognition::Finisher::new(
        bus.clone(),
        config.redis.cache_ttl_secs,
        recognition::Finisher::events_cap(&config),
    );
    let mut misses = if args.local { Misses::Local(None) } else { Misses::Workers(None) };
    let mut failed = 0;
    for photo in &args.photos {
        let bytes = match read_photo(photo) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{e:#}");
                failed += 1;
                continue;
            }
        };
        let md5 = recognition::content_key(&bytes);
        let key = bus.keys().image(&md5);
        if let Some(hit) = recognition::lookup(&mut cache, &key, &model, version).await? {
            print_result(photo, &md5, &hit, true)?;
            continue;
        }
        let answer = match &mut misses {
            Misses::Local(rec) => {
                let rec = match rec {
                    Some(r) => r,
                    None => rec.insert(load_recognizer(&config, &mut shared, &bus).await?),
                };
                recognize(rec, photo, &bytes, &model, version).map(|r| (r, true))
            }
            Misses::Workers(client) => {
                let client = match client {
                    Some(c) => c,
                    None => client.insert(Box::new(
                        remote::Remote::new(&config, &bus, &group.name, args.timeout).await?,
                    )),
                };
                client.identify(photo, &bytes, version).await
            }
        };
        match answer {
            Ok((result, cacheable)) => {
                // Answers made with different gallery versions (an enrolment while they were
                // made) have no one version to be fresh at: printed, not cached.
                if cacheable {
                    finisher
                        .cache(&mut cache, &md5, &result, &Default::default())
                        .await
                        .with_context(|| format!("caching the result under {key}"))?;
                }
                print_result(photo, &md5, &result, false)?;
            }
            Err(e) if e.is::<remote::WorkersUnavailable>() => return Err(e),
            Err(e) => {
                eprintln!("{e:#}");
                failed += 1;
            }
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Reads the file, refusing anything but a regular file and more bytes than images may have.
fn read_photo(photo: &Path) -> anyhow::Result<Vec<u8>> {
    Ok(read_image_file(photo, &ImageLimits::default())?)
}

async fn load_recognizer(
    config: &Config,
    shared: &mut RedisConn,
    bus: &crate::bus::Bus,
) -> anyhow::Result<Recognizer> {
    let pipeline = app::face_pipeline(config)?;
    let (snap, matcher) = gallery::load_matcher(
        shared,
        bus.keys(),
        &config.recognizer.id,
        config.recognizer.dim,
        config.match_policy(),
    )
    .await?;
    for bad in &snap.malformed {
        tracing::warn!(%bad, "Skipped a malformed gallery record.");
    }
    Ok(Recognizer { pipeline, matcher })
}

fn recognize(
    rec: &mut Recognizer,
    photo: &Path,
    bytes: &[u8],
    model: &str,
    version: u64,
) -> anyhow::Result<CachedResult> {
    // The bytes already read and hashed: the answer is for exactly the content of the key.
    let img = decode_image_bytes(bytes, &ImageLimits::default())
        .map_err(|reason| anyhow::anyhow!("{}: {reason}", photo.display()))?;
    let outcomes = rec.pipeline.analyse(&img).with_context(|| format!("{}", photo.display()))?;
    let mut faces = Vec::with_capacity(outcomes.len());
    for face in outcomes {
        let bbox = Some(face.detection.bbox);
        faces.push(match face.verdict {
            Verdict::Embedded(e) => {
                let m = rec.matcher.best(&e)?;
                let (person_id, name) = m.person.unzip();
                // With an empty gallery there is no best score; say 0 rather than -inf.
                let score = if m.score.is_finite() { m.score } else { 0.0 };
                FaceResult { bbox, person_id, name, score, rejected: None }
            }
            Verdict::Rejected(why) => FaceResult {
                bbox,
                person_id: None,
                name: None,
                score: 0.0,
                rejected: Some(why.as_str().to_owned()),
            },
        });
    }
    Ok(CachedResult {
        schema: RESULT_SCHEMA,
        model: model.to_owned(),
        gallery_version: version,
        ts: unix_millis(),
        faces,
    })
}

fn print_result(photo: &Path, md5: &str, result: &CachedResult, cached: bool) -> anyhow::Result<()> {
    if result.faces.is_empty() {
        eprintln!("{}: no face found", photo.display());
    }
    for (i, f) in result.faces.iter().enumerate() {
        let person = match (&f.person_id, &f.name) {
            (Some(id), Some(name)) => Some(PersonRef { id, name }),
            _ => None,
        };
        let line = Line {
            file: photo,
            md5,
            face: i,
            bbox: f.bbox,
            person,
            score: f.score,
            rejected: f.rejected.as_deref(),
            cached,
        };
        println!("{}", serde_json::to_string(&line)?);
    }
    Ok(())
}
