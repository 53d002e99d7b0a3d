//! Enrolment counts only usable faces (issue 14, item 4), on photos composed here from the
//! registry photos (written to the test's temp dir, never committed), with the real models and
//! a real Redis: a portrait with a small blurred face behind it enrols the portrait; two clear
//! faces are refused with each box and size, or the largest enrolled with `--largest`; and
//! `enroll --dir` enrols one person per folder, says who was refused and why, and loses nobody.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};
use redeye::vision::{
    BBox, Detector as _, DetectorSpec, QualityGate, QualitySpec, Rejection, Runtime, SessionOptions, YuNet,
    align_face,
};
use serde_json::Value;
use support::config::{Camera, Group, TestConfig};
use support::process::run_redeye;
use support::redis::RedisServer;
use support::{ort_library, photo, repo};

struct Env {
    _redis: RedisServer,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Env {
    fn new() -> Env {
        let redis = RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        let config = TestConfig::new("enr")
            .redis(&redis)
            .group(Group::new("lobby").camera(Camera::unused("door")))
            .write(dir.path());
        Env { _redis: redis, dir, config }
    }

    fn redeye(&self, args: &[&str]) -> Output {
        run_redeye(&self.config, args)
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.redeye(args);
        assert!(out.status.success(), "redeye {args:?} failed:\n{}", text(&out));
        out
    }

    /// `identify --local` (in process: no worker runs here), one JSON line per face.
    fn faces(&self, file: &Path) -> Vec<Value> {
        let out = self.ok(&["identify", "--local", file.to_str().unwrap()]);
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Who `identify --local` says the (single-face) photo shows.
    fn who(&self, file: &Path) -> Value {
        self.faces(file)[0]["person"]["id"].clone()
    }

    fn gallery(&self) -> String {
        String::from_utf8(self.ok(&["gallery"]).stdout).unwrap()
    }

    fn save(&self, name: &str, img: &RgbImage) -> PathBuf {
        let path = self.dir.path().join(name);
        img.save(&path).unwrap();
        path
    }
}

/// The faces of the photo at `path` as enrolment sees them: the real detector's boxes, each
/// with the default quality gate's verdict (the test config keeps the default `[quality]`).
fn gated_faces(path: &Path) -> Vec<(BBox, Result<(), Rejection>)> {
    let img = image::open(path).unwrap().to_rgb8();
    let runtime = Runtime::init(Some(&ort_library())).unwrap_or_else(|e| panic!("{e}"));
    let spec =
        DetectorSpec { model: repo().join("models/face_detection_yunet_2023mar.onnx"), ..Default::default() };
    let mut detector =
        YuNet::load(runtime, spec, &SessionOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let gate = QualityGate::new(QualitySpec::default());
    let faces = detector.detect(&img).unwrap();
    faces
        .into_iter()
        .map(|d| {
            let crop = align_face(&img, &d.landmarks, 112);
            (d.bbox, gate.check(&d, &crop).map(|_sharpness| ()))
        })
        .collect()
}

/// How `enroll` lists a face: `at (x, y), WxH px`.
fn listed(b: &BBox) -> String {
    format!("at ({:.0}, {:.0}), {:.0}x{:.0} px", b.x, b.y, b.w, b.h)
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn load(name: &str) -> RgbImage {
    image::open(photo(name)).unwrap().to_rgb8()
}

fn scaled(img: &RgbImage, factor: f32) -> RgbImage {
    let (w, h) = img.dimensions();
    imageops::resize(img, (w as f32 * factor) as u32, (h as f32 * factor) as u32, FilterType::Triangle)
}

/// Obama's portrait with Cage's face small and out of focus in its top-left corner, the way a
/// passer-by behind the subject looks.
fn portrait_with_blurred_face() -> RgbImage {
    let mut portrait = load("obama.jpg");
    let behind = imageops::blur(&scaled(&load("cage.jpg"), 0.3), 2.5);
    imageops::overlay(&mut portrait, &behind, 10, 10);
    portrait
}

/// Obama and Cage side by side, both sharp; Obama's face the larger.
fn two_clear_faces() -> RgbImage {
    let obama = scaled(&load("obama.jpg"), 0.6);
    let cage = scaled(&load("cage.jpg"), 0.3);
    let mut both =
        RgbImage::from_pixel(obama.width() + cage.width() + 40, obama.height(), Rgb([200, 200, 200]));
    imageops::overlay(&mut both, &obama, 0, 0);
    imageops::overlay(&mut both, &cage, i64::from(obama.width()) + 40, 60);
    both
}

#[test]
fn a_blurred_background_face_does_not_count() {
    let env = Env::new();
    let portrait = env.save("portrait.jpg", &portrait_with_blurred_face());
    // The detector finds both faces, and the quality gate rejects the one behind.
    let faces = gated_faces(&portrait);
    assert_eq!(faces.len(), 2, "{faces:?}");
    assert_eq!(faces.iter().filter(|(_, gate)| gate.is_err()).count(), 1, "one rejected: {faces:?}");

    let out = env.redeye(&["enroll", "--name", "Barack Obama", portrait.to_str().unwrap()]);
    let said = text(&out);
    assert!(out.status.success(), "the portrait was refused:\n{said}");
    assert!(said.contains("enrolled Barack Obama (barack-obama) from 1 photo"), "{said}");
    assert!(said.contains("not counted: 1 face(s) the quality gate rejects"), "{said}");
    // It is the portrait's face that was enrolled.
    assert_eq!(env.who(&photo("obama2.jpg")), "barack-obama");
    assert_ne!(env.who(&photo("cage2_crop.jpg")), "barack-obama");
}

#[test]
fn two_clear_faces_are_refused_with_their_boxes_or_the_largest_enrolled() {
    let env = Env::new();
    let both = env.save("both.jpg", &two_clear_faces());
    let mut faces = gated_faces(&both);
    assert_eq!(faces.len(), 2, "{faces:?}");
    assert!(faces.iter().all(|(_, gate)| gate.is_ok()), "both usable: {faces:?}");
    faces.sort_by(|a, b| (b.0.w * b.0.h).total_cmp(&(a.0.w * a.0.h)));
    assert!(faces[0].0.x < faces[1].0.x, "Obama's face (left) is the larger: {faces:?}");

    let out = env.redeye(&["enroll", "--name", "Barack Obama", both.to_str().unwrap()]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    // Each face's box and size, as the detector sees them, the larger first.
    let list = format!("face 1 {}, face 2 {}", listed(&faces[0].0), listed(&faces[1].0));
    assert!(
        said.contains(&format!("both.jpg: refused: 2 usable faces found ({list})")),
        "`{list}` in:\n{said}"
    );
    assert!(said.contains("pass --largest to enrol the largest"), "{said}");
    assert!(env.gallery().starts_with("0 people"), "nothing may be enrolled");

    let out = env.ok(&["enroll", "--name", "Barack Obama", "--largest", both.to_str().unwrap()]);
    let said = text(&out);
    assert!(
        said.contains(&format!("2 usable faces: enrolled the largest, {}", listed(&faces[0].0))),
        "{said}"
    );
    assert!(said.contains("enrolled Barack Obama (barack-obama) from 1 photo"), "{said}");
    assert_eq!(env.who(&photo("obama2.jpg")), "barack-obama");
    assert_ne!(env.who(&photo("cage2_crop.jpg")), "barack-obama");
}

#[test]
fn enroll_dir_enrols_each_folder_and_says_who_was_refused_and_why() {
    let env = Env::new();
    // Someone enrolled before: a refused folder must not cost him anything.
    env.ok(&["enroll", "--name", "Sean Connery", photo("SeanConnery.jpg").to_str().unwrap()]);
    let people = env.dir.path().join("people");
    let folder = |name: &str, photos: &[&str]| {
        let dir = people.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for p in photos {
            std::fs::copy(photo(p), dir.join(p)).unwrap();
        }
        dir
    };
    folder("Barack Obama", &["obama.jpg", "obama3.jpg"]);
    folder("Crowd", &["faces.jpg"]);
    let biden = folder("Joe Biden", &["biden.jpg"]);
    std::fs::write(biden.join("notes.txt"), "not a photo").unwrap();
    folder("Nobody", &["skullmask.jpg"]);

    let out = env.redeye(&["enroll", "--dir", people.to_str().unwrap()]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "a refused person makes the run fail:\n{said}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let progress: Vec<&str> = stdout.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(progress.len(), 4, "one progress line per person:\n{stdout}");
    assert!(
        progress[0].starts_with("[1/4] Barack Obama: enrolled as barack-obama from 2 photo(s)"),
        "{stdout}"
    );
    assert!(progress[1].starts_with("[2/4] Crowd: refused: 1 of 1 photos refused: faces.jpg: "), "{stdout}");
    assert!(progress[1].contains("usable faces found (face 1 at ("), "{stdout}");
    assert!(progress[2].starts_with("[3/4] Joe Biden: enrolled as joe-biden from 1 photo(s)"), "{stdout}");
    assert!(
        progress[3].starts_with("[4/4] Nobody: refused: 1 of 1 photos refused: skullmask.jpg: no face found"),
        "{stdout}"
    );
    assert!(said.contains("notes.txt: skipped: not a photo"), "{said}");
    // The summary: counts, then each refusal with its reason.
    assert!(stdout.contains("enrolled 2 of 4 people from "), "{stdout}");
    assert!(stdout.contains("; refused 2"), "{stdout}");
    assert!(stdout.contains("  refused Crowd: 1 of 1 photos refused: faces.jpg: "), "{stdout}");
    assert!(
        stdout.contains("  refused Nobody: 1 of 1 photos refused: skullmask.jpg: no face found"),
        "{stdout}"
    );

    let gallery = env.gallery();
    assert!(gallery.starts_with("3 people"), "{gallery}");
    for id in ["sean-connery", "barack-obama", "joe-biden"] {
        assert!(gallery.contains(id), "{id} missing:\n{gallery}");
    }
    assert!(!gallery.contains("crowd") && !gallery.contains("nobody"), "{gallery}");
    assert_eq!(env.who(&photo("obama2.jpg")), "barack-obama");
}
