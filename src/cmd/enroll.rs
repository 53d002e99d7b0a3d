//! `redeye enroll --name NAME PHOTO...`: add a person to the gallery from photos of them;
//! `redeye enroll --name NAME --visitor v-...`: from what the cameras saw of an anonymous
//! visitor (their stored embeddings), which then stops being a visitor.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::CommonArgs;
use crate::app;
use crate::instrument::unix_millis;
use crate::recognize::gallery;
use crate::terminal::printable;
use crate::vision::{FacePipeline, ImageLimits, Verdict, decode_image_file};
use crate::visitor::store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The person's name; their id is the name lowercased, e.g. "Barack Obama" is barack-obama.
    #[arg(long)]
    pub name: String,
    /// Photos of the person, each holding exactly one face.
    #[arg(required_unless_present = "visitor", conflicts_with = "visitor")]
    pub photos: Vec<PathBuf>,
    /// Enrol from an anonymous visitor's stored embeddings (see `redeye visitors`) instead of
    /// photos; the visitor is removed and their visits are linked to the person.
    #[arg(long)]
    pub visitor: Option<String>,
}

pub async fn run(common: &CommonArgs, args: Args) -> anyhow::Result<ExitCode> {
    let config = app::load_config(&common.config)?;
    // Before any model loads: a refused name is the quickest error.
    gallery::check_name(&args.name)?;
    let id = gallery::person_id(&args.name)?;
    if let Some(visitor) = &args.visitor {
        return from_visitor(&config, &args.name, visitor).await;
    }
    let mut pipeline = app::face_pipeline(&config)?;
    // Embed every photo first: a refused photo enrols nothing, so a typo in a file list never
    // leaves a half-enrolled person behind.
    let mut embeddings = Vec::new();
    let mut refused = 0;
    for photo in &args.photos {
        match embed_single_face(&mut pipeline, photo) {
            Ok(e) => embeddings.push(e),
            Err(reason) => {
                eprintln!("{}: refused: {reason}", photo.display());
                refused += 1;
            }
        }
    }
    if refused > 0 {
        eprintln!("enrolled nothing: {refused} of {} photos refused", args.photos.len());
        return Ok(ExitCode::FAILURE);
    }
    let bus = app::connect(&config).await?;
    let model = config.recognizer.id.clone();
    let (person, version) = gallery::enroll(&mut bus.shared(), bus.keys(), &args.name, &model, &embeddings)
        .await
        .with_context(|| format!("enrolling {id}"))?;
    println!(
        "enrolled {} ({}) from {} photo(s) with {}; gallery version {version}",
        printable(&person.name),
        printable(&person.id),
        embeddings.len(),
        printable(&person.model)
    );
    Ok(ExitCode::SUCCESS)
}

/// Enrols `name` from visitor `id`'s embeddings, then removes the visitor. Refuses a visitor
/// with fewer embeddings than `[visitors] enroll_min_embeddings`, or of another recogniser.
async fn from_visitor(config: &crate::config::Config, name: &str, id: &str) -> anyhow::Result<ExitCode> {
    super::visitors::check_id(id)?;
    let bus = app::connect(config).await?;
    let mut conn = bus.shared();
    let keys = bus.keys();
    let Some(v) = store::get(&mut conn, keys, id).await? else {
        anyhow::bail!("{}", super::visitors::not_found(id, config.visitors.ttl_secs));
    };
    let model = &config.recognizer.id;
    if &v.model != model {
        anyhow::bail!(
            "visitor {id} was seen with recogniser `{}`, this one is `{model}`: their embeddings do not compare",
            v.model
        );
    }
    let need = config.visitors.enroll_min_embeddings;
    if v.embeddings.len() < need {
        anyhow::bail!(
            "visitor {id} has {} good embedding(s), enrolment needs at least {need} ([visitors] enroll_min_embeddings): \
             wait until the cameras have seen them longer, or enrol from photos",
            v.embeddings.len()
        );
    }
    let (person, version) = gallery::enroll_from(&mut conn, keys, name, model, &v.embeddings, Some(id))
        .await
        .with_context(|| format!("enrolling {name} from visitor {id}"))?;
    store::delete(&mut conn, keys, id, unix_millis()).await?;
    let cameras: Vec<&str> = v.cameras.iter().map(|(c, _)| c.as_str()).collect();
    println!(
        "enrolled {} ({}) from visitor {id}: {} embedding(s), {} visit(s) at {}; the visitor is removed, its id is \
         kept on the person (`redeye gallery`) to link its visits; gallery version {version}",
        person.name,
        person.id,
        v.embeddings.len(),
        v.visits,
        crate::terminal::printable(&cameras.join(", "))
    );
    Ok(ExitCode::SUCCESS)
}

/// The embedding of the one face in `photo`, or why the photo cannot be used.
fn embed_single_face(pipeline: &mut FacePipeline, photo: &std::path::Path) -> Result<Vec<f32>, String> {
    let img = decode_image_file(photo, &ImageLimits::default()).map_err(|e| e.to_string())?;
    let mut faces = pipeline.analyse(&img).map_err(|e| e.to_string())?;
    match faces.len() {
        0 => return Err("no face found".into()),
        1 => {}
        n => return Err(format!("{n} faces found; enrol from a photo with exactly one face")),
    }
    let face = faces.remove(0);
    match face.verdict {
        Verdict::Embedded(e) => Ok(e),
        Verdict::Rejected(why) => Err(format!(
            "the face fails the quality gate: {} (score {:.2}, {:.0}x{:.0} px)",
            why.as_str(),
            face.detection.score,
            face.detection.bbox.w,
            face.detection.bbox.h
        )),
    }
}
