//! `redeye enroll --name NAME PHOTO...`: add a person to the gallery from photos of them;
//! `redeye enroll --dir DIR`: everyone under DIR, one sub-folder per person named after it;
//! `redeye enroll --name NAME --visitor v-...`: from what the cameras saw of an anonymous
//! visitor (their stored embeddings), which then stops being a visitor.
//!
//! Only the faces the quality gate accepts count: a portrait with a small blurred face in the
//! background enrols the portrait's face (the gate would never send the blurred one to a
//! worker either). Two or more usable faces are refused, each listed with its box and size,
//! unless `--largest` says to take the largest: guessing which face is meant would enrol the
//! wrong person under a name without anyone noticing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::CommonArgs;
use crate::app;
use crate::bus::Bus;
use crate::config::Config;
use crate::instrument::unix_millis;
use crate::recognize::gallery::{self, GalleryError};
use crate::terminal::printable;
use crate::vision::{
    BBox, Detection, FaceOutcome, FacePipeline, ImageLimits, Rejection, Verdict, decode_image_file,
};
use crate::visitor::store;

/// The files `--dir` takes from a person's folder, by extension (any case).
const PHOTO_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The person's name; their id is the name lowercased, e.g. "Barack Obama" is barack-obama.
    #[arg(long, required_unless_present = "dir")]
    pub name: Option<String>,
    /// Photos of the person, each holding one face the quality gate accepts (see --largest).
    #[arg(required_unless_present_any = ["visitor", "dir"], conflicts_with_all = ["visitor", "dir"])]
    pub photos: Vec<PathBuf>,
    /// Enrol from an anonymous visitor's stored embeddings (see `redeye visitors`) instead of
    /// photos; the visitor is removed and their visits are linked to the person.
    #[arg(long, conflicts_with = "dir")]
    pub visitor: Option<String>,
    /// A photo with several usable faces enrols the largest of them instead of being refused.
    #[arg(long, conflicts_with = "visitor")]
    pub largest: bool,
    /// Enrol everyone under DIR: each sub-folder is one person, named after the folder, holding
    /// their photos (jpg, jpeg, png). A refused person does not stop (or undo) the others.
    #[arg(long, value_name = "DIR", conflicts_with = "name")]
    pub dir: Option<PathBuf>,
}

pub async fn run(common: &CommonArgs, args: Args) -> anyhow::Result<ExitCode> {
    let config = app::load_config(&common.config)?;
    if let Some(dir) = &args.dir {
        return from_dir(&config, dir, args.largest).await;
    }
    let name = args.name.as_deref().context("--name NAME is required without --dir")?;
    // Before any model loads: a refused name is the quickest error.
    gallery::check_name(name)?;
    let id = gallery::person_id(name)?;
    if let Some(visitor) = &args.visitor {
        return from_visitor(&config, name, visitor).await;
    }
    let mut pipeline = app::face_pipeline(&config)?;
    // Embed every photo first: a refused photo enrols nothing, so a typo in a file list never
    // leaves a half-enrolled person behind.
    let (embeddings, refused) = embed_photos(&mut pipeline, &args.photos, args.largest);
    for (photo, reason) in &refused {
        eprintln!("{}: refused: {reason}", photo.display());
    }
    if !refused.is_empty() {
        eprintln!("enrolled nothing: {} of {} photos refused", refused.len(), args.photos.len());
        return Ok(ExitCode::FAILURE);
    }
    let bus = app::connect(&config).await?;
    let model = config.recognizer.id.clone();
    let (person, version) = gallery::enroll(&mut bus.shared(), bus.keys(), name, &model, &embeddings)
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

/// The embedding of each photo's face, and the photos refused with why. What was left out of
/// an accepted photo (faces the gate rejects, the smaller faces `--largest` passed over) is
/// said on stderr.
fn embed_photos(
    pipeline: &mut FacePipeline,
    photos: &[PathBuf],
    largest: bool,
) -> (Vec<Vec<f32>>, Vec<(PathBuf, String)>) {
    let mut embeddings = Vec::new();
    let mut refused = Vec::new();
    for photo in photos {
        match embed_photo(pipeline, photo, largest) {
            Ok(chosen) => {
                for note in &chosen.notes {
                    eprintln!("{}: {note}", photo.display());
                }
                embeddings.push(chosen.embedding);
            }
            Err(reason) => refused.push((photo.clone(), reason)),
        }
    }
    (embeddings, refused)
}

/// The face a photo enrols, and what was left out.
#[derive(Debug)]
struct Chosen {
    embedding: Vec<f32>,
    notes: Vec<String>,
}

/// The face of `photo` to enrol, or why the photo cannot be used.
fn embed_photo(pipeline: &mut FacePipeline, photo: &Path, largest: bool) -> Result<Chosen, String> {
    let img = decode_image_file(photo, &ImageLimits::default()).map_err(|e| e.to_string())?;
    let faces = pipeline.analyse(&img).map_err(|e| e.to_string())?;
    choose_face(faces, largest)
}

/// Picks the face to enrol among a photo's faces: the only one the quality gate accepts, or
/// with `largest` the largest of several; otherwise says why not, listing the faces.
fn choose_face(faces: Vec<FaceOutcome>, largest: bool) -> Result<Chosen, String> {
    let mut usable: Vec<(BBox, Vec<f32>)> = Vec::new();
    let mut rejected: Vec<(Detection, Rejection)> = Vec::new();
    for face in faces {
        match face.verdict {
            Verdict::Embedded(e) => usable.push((face.detection.bbox, e)),
            Verdict::Rejected(r) => rejected.push((face.detection, r)),
        }
    }
    // Largest first: "face 1" of a refusal is the one `--largest` would take.
    usable.sort_by(|a, b| area(&b.0).total_cmp(&area(&a.0)));
    let rejected_list =
        || rejected.iter().map(|(d, r)| format!("{} {r}", describe(&d.bbox))).collect::<Vec<_>>();
    let mut notes = Vec::new();
    if !rejected.is_empty() && !usable.is_empty() {
        notes.push(format!(
            "not counted: {} face(s) the quality gate rejects ({})",
            rejected.len(),
            rejected_list().join("; ")
        ));
    }
    match usable.len() {
        0 => match rejected.as_slice() {
            [] => Err("no face found".into()),
            [(d, why)] => Err(format!(
                "the face fails the quality gate: {} (score {:.2}, {:.0}x{:.0} px)",
                why.as_str(),
                d.score,
                d.bbox.w,
                d.bbox.h
            )),
            all => Err(format!(
                "no usable face: each of the {} faces found fails the quality gate ({})",
                all.len(),
                rejected_list().join("; ")
            )),
        },
        1 => Ok(Chosen { embedding: usable.remove(0).1, notes }),
        n if largest => {
            let (bbox, embedding) = usable.remove(0);
            notes.push(format!("{n} usable faces: enrolled the largest, {}", describe(&bbox)));
            Ok(Chosen { embedding, notes })
        }
        n => Err(format!(
            "{n} usable faces found ({}); enrol from a photo with one usable face, or pass --largest \
             to enrol the largest",
            usable
                .iter()
                .enumerate()
                .map(|(i, (bbox, _))| format!("face {} {}", i + 1, describe(bbox)))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn area(b: &BBox) -> f32 {
    b.w.max(0.0) * b.h.max(0.0)
}

/// Where a face is and how big: `at (301, 123), 210x268 px` (image pixels, top-left corner).
fn describe(b: &BBox) -> String {
    format!("at ({:.0}, {:.0}), {:.0}x{:.0} px", b.x, b.y, b.w, b.h)
}

/// `enroll --dir`: one person per sub-folder of `dir`, each enrolled (or refused) on its own,
/// with a progress line each and a summary; exit 1 if anyone was refused. A person enrolled
/// stays enrolled whatever happens to the folders after it; only Redis failing stops the run.
async fn from_dir(config: &Config, dir: &Path, largest: bool) -> anyhow::Result<ExitCode> {
    let folders = person_folders(dir)?;
    let bus = app::connect(config).await?;
    let mut pipeline = app::face_pipeline(config)?;
    let total = folders.len();
    let mut enrolled = 0;
    let mut refused: Vec<(String, String)> = Vec::new();
    // Person id -> the folder that enrolled it: two folders that give one id ("Ann Lee" and
    // "ann-lee") would silently merge two people.
    let mut ids: HashMap<String, String> = HashMap::new();
    for (i, folder) in folders.iter().enumerate() {
        let shown = printable(&folder.file_name().unwrap_or_default().to_string_lossy()).into_owned();
        match enroll_folder(config, &bus, &mut pipeline, folder, largest, &mut ids).await? {
            Ok(done) => {
                enrolled += 1;
                println!("[{}/{total}] {shown}: {done}", i + 1);
            }
            Err(reason) => {
                println!("[{}/{total}] {shown}: refused: {reason}", i + 1);
                refused.push((shown, reason));
            }
        }
    }
    println!("enrolled {enrolled} of {total} people from {}; refused {}", dir.display(), refused.len());
    for (who, reason) in &refused {
        println!("  refused {who}: {reason}");
    }
    Ok(if refused.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The sub-folders of `dir`, by name. Files directly in `dir` belong to nobody: said and skipped.
fn person_folders(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut folders = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("reading {}", dir.display()))?.path();
        if path.is_dir() {
            folders.push(path);
        } else {
            eprintln!("{}: skipped: not in a person's folder", path.display());
        }
    }
    folders.sort();
    anyhow::ensure!(
        !folders.is_empty(),
        "{}: no sub-folders; --dir takes one sub-folder per person, named after them, holding their photos",
        dir.display()
    );
    Ok(folders)
}

/// The photos of one person's folder (jpg, jpeg, png), by name; anything else is said and
/// skipped.
fn folder_photos(folder: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut photos = Vec::new();
    for entry in std::fs::read_dir(folder)? {
        let path = entry?.path();
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if path.is_file() && ext.is_some_and(|e| PHOTO_EXTENSIONS.contains(&e.as_str())) {
            photos.push(path);
        } else {
            eprintln!("{}: skipped: not a photo ({})", path.display(), PHOTO_EXTENSIONS.join(", "));
        }
    }
    photos.sort();
    Ok(photos)
}

/// Enrols the person of `folder`: `Ok(Ok(what was done))`, `Ok(Err(why it was refused))`, or an
/// error that stops the whole run (Redis).
async fn enroll_folder(
    config: &Config,
    bus: &Bus,
    pipeline: &mut FacePipeline,
    folder: &Path,
    largest: bool,
    ids: &mut HashMap<String, String>,
) -> anyhow::Result<Result<String, String>> {
    let Some(name) = folder.file_name().and_then(|n| n.to_str()) else {
        return Ok(Err("the folder's name is not UTF-8 text, and it is the person's name".into()));
    };
    let id = match gallery::check_name(name).and_then(|()| gallery::person_id(name)) {
        Ok(id) => id,
        Err(e) => return Ok(Err(e.to_string())),
    };
    if let Some(other) = ids.get(&id) {
        return Ok(Err(format!("its id `{id}` is the one of folder `{}` above", printable(other))));
    }
    let photos = match folder_photos(folder) {
        Ok(p) if p.is_empty() => {
            return Ok(Err(format!("no photos ({}) in {}", PHOTO_EXTENSIONS.join(", "), folder.display())));
        }
        Ok(p) => p,
        Err(e) => return Ok(Err(format!("cannot read {}: {e}", folder.display()))),
    };
    let (embeddings, refused) = embed_photos(pipeline, &photos, largest);
    if !refused.is_empty() {
        let each: Vec<String> = refused
            .iter()
            .map(|(p, why)| format!("{}: {why}", p.file_name().unwrap_or_default().to_string_lossy()))
            .collect();
        return Ok(Err(format!("{} of {} photos refused: {}", refused.len(), photos.len(), each.join("; "))));
    }
    match gallery::enroll(&mut bus.shared(), bus.keys(), name, &config.recognizer.id, &embeddings).await {
        Ok((person, version)) => {
            ids.insert(id, name.to_owned());
            Ok(Ok(format!(
                "enrolled as {} from {} photo(s); gallery version {version}",
                printable(&person.id),
                embeddings.len()
            )))
        }
        Err(GalleryError::Redis(e)) => Err(anyhow::Error::new(e).context(format!(
            "enrolling {id} from {}: Redis failed; the people above are enrolled, the rest are not",
            folder.display()
        ))),
        Err(other) => Ok(Err(other.to_string())),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32, size: f32, verdict: Verdict) -> FaceOutcome {
        let bbox = BBox { x, y: 10.0, w: size, h: size };
        FaceOutcome {
            detection: Detection { bbox, score: 0.9, landmarks: [[0.0; 2]; 5] },
            crop: image::RgbImage::new(112, 112),
            verdict,
        }
    }

    fn blurry() -> Verdict {
        Verdict::Rejected(Rejection::Blurry { sharpness: 3.0 })
    }

    #[test]
    fn rejected_faces_do_not_count() {
        let chosen = choose_face(
            vec![face(0.0, 200.0, Verdict::Embedded(vec![1.0])), face(400.0, 40.0, blurry())],
            false,
        )
        .unwrap();
        assert_eq!(chosen.embedding, vec![1.0]);
        assert!(
            chosen.notes[0].contains("1 face(s) the quality gate rejects")
                && chosen.notes[0].contains("blurry")
        );
    }

    #[test]
    fn several_usable_faces_are_listed_largest_first_or_the_largest_taken() {
        let faces = || {
            vec![
                face(0.0, 100.0, Verdict::Embedded(vec![1.0])),
                face(300.0, 150.0, Verdict::Embedded(vec![2.0])),
                face(600.0, 40.0, blurry()),
            ]
        };
        let refused = choose_face(faces(), false).unwrap_err();
        assert!(
            refused.starts_with(
                "2 usable faces found (face 1 at (300, 10), 150x150 px, face 2 at (0, 10), 100x100 px)"
            ),
            "{refused}"
        );
        assert!(refused.contains("--largest"), "{refused}");
        assert_eq!(choose_face(faces(), true).unwrap().embedding, vec![2.0]);
    }

    #[test]
    fn no_usable_face_says_why() {
        assert_eq!(choose_face(vec![], false).unwrap_err(), "no face found");
        let one = choose_face(vec![face(0.0, 50.0, blurry())], true).unwrap_err();
        assert!(one.starts_with("the face fails the quality gate: blurry"), "{one}");
        let two = choose_face(vec![face(0.0, 50.0, blurry()), face(90.0, 50.0, blurry())], true).unwrap_err();
        assert!(two.starts_with("no usable face: each of the 2 faces"), "{two}");
    }
}
