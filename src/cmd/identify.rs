//! `redeye identify PHOTO...`: the seed article's client. The MD5 of the file's bytes keys the
//! result in Redis (`image:<md5>`): a fresh cached result answers at once; otherwise the photo is
//! recognised here, and the result cached with its TTL for next time.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

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

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Photos to identify (JPEG or PNG).
    #[arg(required = true)]
    pub photos: Vec<PathBuf>,
    /// The camera group whose Redis node holds the cache (matters only with named nodes;
    /// default: the first group).
    #[arg(long)]
    pub group: Option<String>,
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
    let mut recognizer: Option<Recognizer> = None;
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
        let rec = match &mut recognizer {
            Some(r) => r,
            None => recognizer.insert(load_recognizer(&config, &mut shared, &bus).await?),
        };
        match recognize(rec, photo, &bytes, &model, version) {
            Ok(result) => {
                let finisher = recognition::Finisher::new(
                    bus.clone(),
                    config.redis.cache_ttl_secs,
                    recognition::Finisher::events_cap(&config),
                );
                finisher
                    .cache(&mut cache, &md5, &result, &Default::default())
                    .await
                    .with_context(|| format!("caching the result under {key}"))?;
                print_result(photo, &md5, &result, false)?;
            }
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
