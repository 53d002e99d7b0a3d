//! `redeye enroll --name NAME PHOTO...`: add a person to the gallery from photos of them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::CommonArgs;
use crate::app;
use crate::recognize::gallery;
use crate::terminal::printable;
use crate::vision::{FacePipeline, ImageLimits, Verdict, decode_image_file};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The person's name; their id is the name lowercased, e.g. "Barack Obama" is barack-obama.
    #[arg(long)]
    pub name: String,
    /// Photos of the person, each holding exactly one face.
    #[arg(required = true)]
    pub photos: Vec<PathBuf>,
}

pub async fn run(common: &CommonArgs, args: Args) -> anyhow::Result<ExitCode> {
    let config = app::load_config(&common.config)?;
    // Before any model loads: a refused name is the quickest error.
    gallery::check_name(&args.name)?;
    let id = gallery::person_id(&args.name)?;
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
