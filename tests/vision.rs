//! Vision against real models, real ONNX Runtime and real photos.
//!
//! - Golden: redeye's detector, alignment and embedder against OpenCV's `FaceDetectorYN` and
//!   `FaceRecognizerSF` on the same model files (tests/fixtures/golden/, written by
//!   scripts/opencv_golden.py).
//! - Accuracy: enrol one photo per person, identify the rest, check unknowns, the group photo and
//!   the non-faces.
//!
//! The photos are fetched by scripts/setup.sh (listed with their sha256 in
//! tests/fixtures/photos.tsv) and the models ship in models/; anything missing is a failure that
//! says to run the setup, never a skip. `REDEYE_MODELS_DIR` and `REDEYE_PHOTOS_DIR` override the
//! default locations (`models/`, `.cache/photos/`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::RgbImage;
use redeye::recognize::matcher::{MatchPolicy, Matcher};
use redeye::vision::embed::cosine;
use redeye::vision::{
    Detection, Detector, DetectorSpec, Embedder, FacePipeline, ImageLimits, OnnxEmbedder, QualityGate,
    QualitySpec, RecognizerSpec, Runtime, SessionOptions, VisionError, YuNet, align_face, decode_image_file,
};
use serde::Deserialize;

const SETUP: &str = "run scripts/setup.sh (it fetches the photos, models and ONNX Runtime)";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn models_dir() -> PathBuf {
    std::env::var_os("REDEYE_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("models"))
}

fn photos_dir() -> PathBuf {
    std::env::var_os("REDEYE_PHOTOS_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join(".cache/photos"))
}

fn runtime() -> &'static Runtime {
    Runtime::init(None).unwrap_or_else(|e| panic!("{e}"))
}

fn model(name: &str) -> PathBuf {
    let p = models_dir().join(name);
    assert!(p.is_file(), "model {} is missing: {SETUP}", p.display());
    p
}

fn detector() -> YuNet {
    let spec = DetectorSpec { model: model("face_detection_yunet_2023mar.onnx"), ..DetectorSpec::default() };
    YuNet::load(runtime(), spec, &SessionOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn sface() -> OnnxEmbedder {
    let spec = RecognizerSpec {
        model: model("face_recognition_sface_2021dec_fp32.onnx"),
        ..RecognizerSpec::default()
    };
    OnnxEmbedder::load(runtime(), spec, &SessionOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn mobilefacenet_spec() -> RecognizerSpec {
    serde_json::from_value(serde_json::json!({
        "model": model("mobilefacenet_192d_dynbatch.onnx"),
        "id": "mobilefacenet-192d",
        "input": "input",
        "output": "embeddings",
        "mean": 127.5,
        "scale": 0.0078125,
        "dim": 192,
        "max_batch": 32,
        "match_threshold": 0.45,
    }))
    .unwrap()
}

/// One row of tests/fixtures/photos.tsv.
#[derive(Debug, Clone)]
struct Photo {
    file: String,
    person: String,
}

fn photos() -> Vec<Photo> {
    let manifest = repo().join("tests/fixtures/photos.tsv");
    let text = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; {SETUP}", manifest.display()));
    let rows: Vec<Photo> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.starts_with("file\t"))
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert!(cols.len() >= 5, "{}: bad line {l:?}", manifest.display());
            Photo { file: cols[0].to_string(), person: cols[4].to_string() }
        })
        .collect();
    let missing: Vec<&str> =
        rows.iter().filter(|p| !photos_dir().join(&p.file).is_file()).map(|p| p.file.as_str()).collect();
    assert!(missing.is_empty(), "photos missing from {}: {missing:?}; {SETUP}", photos_dir().display());
    rows
}

fn load(file: &str) -> RgbImage {
    decode_image_file(&photos_dir().join(file), &ImageLimits::default()).unwrap_or_else(|e| panic!("{e}"))
}

#[derive(Debug, Deserialize)]
struct Golden {
    photo: String,
    opencv_version: String,
    faces: Vec<GoldenFace>,
}

#[derive(Debug, Deserialize)]
struct GoldenFace {
    bbox: [f32; 4],
    score: f32,
    landmarks: [[f32; 2]; 5],
    crop: String,
    embedding: Vec<f32>,
}

fn golden_dir() -> PathBuf {
    repo().join("tests/fixtures/golden")
}

fn goldens() -> Vec<Golden> {
    let mut out: Vec<Golden> = photos()
        .iter()
        .map(|p| {
            let stem = Path::new(&p.file).file_stem().unwrap().to_string_lossy().into_owned();
            let path = golden_dir().join(format!("{stem}.json"));
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("{}: {e}; regenerate with scripts/opencv_golden.py", path.display())
            });
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect();
    out.sort_by(|a, b| a.photo.cmp(&b.photo));
    out
}

fn normalized(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
    sum as f64 / a.as_raw().len() as f64
}

fn landmark_error(a: &[[f32; 2]; 5], b: &[[f32; 2]; 5]) -> f32 {
    a.iter().zip(b).map(|(p, q)| (p[0] - q[0]).hypot(p[1] - q[1])).fold(0.0, f32::max)
}

/// Pairs Rust's and OpenCV's detections greedily by IoU (best pair first, IoU > 0.3).
/// Returns the pairs `(rust, opencv)` and the unpaired indices of each side.
fn pair_up(rust: &[Detection], cv: &[Detection]) -> (Vec<(usize, usize)>, Vec<usize>, Vec<usize>) {
    let mut cands: Vec<(f32, usize, usize)> = Vec::new();
    for (i, r) in rust.iter().enumerate() {
        for (j, c) in cv.iter().enumerate() {
            let iou = r.bbox.iou(&c.bbox);
            if iou > 0.3 {
                cands.push((iou, i, j));
            }
        }
    }
    cands.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut used_r, mut used_c, mut pairs) = (vec![false; rust.len()], vec![false; cv.len()], Vec::new());
    for (_, i, j) in cands {
        if !used_r[i] && !used_c[j] {
            used_r[i] = true;
            used_c[j] = true;
            pairs.push((i, j));
        }
    }
    let only_r = (0..rust.len()).filter(|&i| !used_r[i]).collect();
    let only_c = (0..cv.len()).filter(|&j| !used_c[j]).collect();
    (pairs, only_r, only_c)
}

#[test]
fn detections_match_opencv() {
    let mut det = detector();
    // The same model without NMS: every candidate above the threshold.
    let mut all = YuNet::load(
        runtime(),
        DetectorSpec { nms_threshold: 1.0, ..det.spec().clone() },
        &SessionOptions::default(),
    )
    .unwrap();
    let threshold = det.spec().score_threshold;
    let (mut min_iou, mut max_lm, mut faces, mut problems, mut allowed) =
        (1f32, 0f32, 0, Vec::new(), Vec::new());
    let mut ties = Vec::new();
    let mut version = String::new();
    for g in goldens() {
        version.clone_from(&g.opencv_version);
        let img = load(&g.photo);
        let (w, h) = img.dimensions();
        let rust = det.detect(&img).unwrap();
        // OpenCV's boxes are stored unclipped; clip them as redeye does.
        let cv: Vec<Detection> = g
            .faces
            .iter()
            .map(|f| Detection {
                bbox: redeye::vision::BBox { x: f.bbox[0], y: f.bbox[1], w: f.bbox[2], h: f.bbox[3] }
                    .clip(w, h),
                score: f.score,
                landmarks: f.landmarks,
            })
            .collect();
        let (pairs, only_r, only_c) = pair_up(&rust, &cv);
        for (i, j) in pairs {
            faces += 1;
            let iou = rust[i].bbox.iou(&cv[j].bbox);
            let lm = landmark_error(&rust[i].landmarks, &cv[j].landmarks);
            if iou >= 0.95 && lm <= 1.5 {
                min_iou = min_iou.min(iou);
                max_lm = max_lm.max(lm);
                continue;
            }
            // Neighbouring grid cells often predict the same face with scores equal to 1e-5;
            // pixel-level differences (JPEG decoder, resize rounding) then decide which one NMS
            // keeps. Accept OpenCV's pick if it is among our candidates with a tied score.
            let tie = all.detect(&img).unwrap().into_iter().find(|c| {
                c.bbox.iou(&cv[j].bbox) >= 0.95
                    && landmark_error(&c.landmarks, &cv[j].landmarks) <= 1.5
                    && (c.score - rust[i].score).abs() <= 1e-3
            });
            match tie {
                Some(c) => {
                    min_iou = min_iou.min(c.bbox.iou(&cv[j].bbox));
                    max_lm = max_lm.max(landmark_error(&c.landmarks, &cv[j].landmarks));
                    ties.push(format!(
                        "{}: face {j}: NMS kept a different one of two tied candidates (scores {:.6} and {:.6}; \
                         landmarks {lm:.1} px apart)",
                        g.photo, rust[i].score, c.score
                    ));
                }
                None => {
                    problems.push(format!("{}: face {j}: IoU {iou:.3}, landmarks off by {lm:.2} px", g.photo))
                }
            }
        }
        // A face scoring within 0.02 of the threshold may fall on either side of it.
        let lone =
            only_r.iter().map(|&i| ("redeye", &rust[i])).chain(only_c.iter().map(|&j| ("OpenCV", &cv[j])));
        for (side, d) in lone {
            let msg = format!("{}: only {side} found {:?} (score {:.3})", g.photo, d.bbox, d.score);
            if d.score < threshold + 0.02 { allowed.push(msg) } else { problems.push(msg) }
        }
    }
    eprintln!(
        "detections vs OpenCV {version}: {faces} faces paired, IoU min {min_iou:.4}, landmark error max {max_lm:.3} px; \
         allowed near-threshold misses: {allowed:?}; ties: {ties:?}"
    );
    assert!(faces > 0, "no faces compared");
    assert!(problems.is_empty(), "detections differ from OpenCV:\n{}", problems.join("\n"));
}

#[test]
fn alignment_and_embeddings_match_opencv() {
    let mut emb = sface();
    let (mut min_cos, mut max_diff, mut sum_diff, mut min_e2e, mut n) = (1f32, 0f64, 0f64, 1f32, 0);
    let mut problems = Vec::new();
    let mut det = detector();
    for g in goldens() {
        let img = load(&g.photo);
        let rust_dets = det.detect(&img).unwrap();
        for f in &g.faces {
            let cv_crop = image::open(golden_dir().join(&f.crop)).unwrap().into_rgb8();
            let cv_emb = normalized(&f.embedding);
            // Same crop, our embedder: isolates the embedding step.
            let ours = emb.embed(std::slice::from_ref(&cv_crop)).unwrap().remove(0);
            let cos = cosine(&ours, &cv_emb);
            // OpenCV's landmarks, our warp: isolates alignment (plus JPEG decoder differences).
            let crop = align_face(&img, &f.landmarks, 112);
            let diff = mean_abs_diff(&crop, &cv_crop);
            // End to end: our own detection, crop and embedding.
            let best = rust_dets.iter().max_by(|a, b| {
                let b1 = redeye::vision::BBox { x: f.bbox[0], y: f.bbox[1], w: f.bbox[2], h: f.bbox[3] };
                a.bbox.iou(&b1).total_cmp(&b.bbox.iou(&b1))
            });
            if let Some(d) = best {
                let e2e = emb.embed(&[align_face(&img, &d.landmarks, 112)]).unwrap().remove(0);
                min_e2e = min_e2e.min(cosine(&e2e, &cv_emb));
            }
            n += 1;
            min_cos = min_cos.min(cos);
            max_diff = max_diff.max(diff);
            sum_diff += diff;
            if cos < 0.99 || diff > 2.0 {
                problems
                    .push(format!("{} {}: cosine {cos:.5}, crop mean abs diff {diff:.3}", g.photo, f.crop));
            }
        }
    }
    eprintln!(
        "embeddings vs OpenCV: {n} faces, cosine (same crop) min {min_cos:.6}; our crop vs OpenCV's: mean abs \
         diff max {max_diff:.3}, mean {:.3} (0..255); end to end cosine min {min_e2e:.4}",
        sum_diff / n as f64
    );
    assert!(n > 0, "no faces compared");
    assert!(problems.is_empty(), "differences from OpenCV:\n{}", problems.join("\n"));
    assert!(min_e2e >= 0.95, "end-to-end embedding far from OpenCV's: cosine {min_e2e}");
}

/// The vision path on one photo: every face, in detector order.
fn pipeline(embedder: Box<dyn Embedder>) -> FacePipeline {
    FacePipeline::new(Box::new(detector()), QualityGate::new(QualitySpec::default()), embedder)
}

/// People with at least two photos (the enrolled set) and the rest, from the manifest.
fn people(photos: &[Photo]) -> (BTreeMap<String, Vec<String>>, Vec<Photo>) {
    let mut by_person: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in photos.iter().filter(|p| p.person != "group" && p.person != "none") {
        by_person.entry(p.person.clone()).or_default().push(p.file.clone());
    }
    let singles: Vec<Photo> =
        photos.iter().filter(|p| by_person.get(&p.person).is_some_and(|v| v.len() == 1)).cloned().collect();
    by_person.retain(|_, v| v.len() >= 2);
    (by_person, singles)
}

/// The single face of a portrait: the best-scoring accepted one.
fn portrait_embedding(p: &mut FacePipeline, file: &str) -> Vec<f32> {
    let out = p.analyse(&load(file)).unwrap_or_else(|e| panic!("{e}"));
    let face = out.iter().find_map(|o| o.embedding()).unwrap_or_else(|| {
        let why: Vec<String> = out.iter().map(|o| format!("{:?}", o.verdict)).collect();
        panic!("{file}: no accepted face (faces: {why:?})")
    });
    face.to_vec()
}

fn range(v: &[f32]) -> (f32, f32) {
    let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (lo, hi)
}

fn show_range(v: &[f32]) -> String {
    match range(v) {
        _ if v.is_empty() => "none".into(),
        (lo, hi) => format!("{lo:.3}..{hi:.3}"),
    }
}

/// Enrols the first photo of each person with 2+ photos and identifies their other photos: the
/// right person must come first for every probe. Then checks that strangers come back unknown:
/// people with one photo (never enrolled), and each enrolled person in turn held out of the
/// gallery, which is the hard case (a stranger who resembles exactly one enrolled person).
/// Returns a report line.
fn check_accuracy(p: &mut FacePipeline, policy: MatchPolicy) -> String {
    let photos = photos();
    let (enrolled, singles) = people(&photos);
    assert!(enrolled.len() >= 5, "need 5+ people with 2+ photos in photos.tsv, have {enrolled:?}");
    assert!(!singles.is_empty(), "no never-enrolled people (persons with one photo) in photos.tsv");
    // Every portrait embedded once.
    let mut emb: BTreeMap<&str, Vec<(&str, Vec<f32>)>> = BTreeMap::new();
    for (person, files) in &enrolled {
        for f in files {
            let e = portrait_embedding(p, f);
            emb.entry(person.as_str()).or_default().push((f.as_str(), e));
        }
    }
    let dim = p.embedder.dim();
    let gallery = |without: Option<&str>| {
        let mut m = Matcher::new(dim, policy);
        for (person, faces) in emb.iter().filter(|(k, _)| Some(**k) != without) {
            m.add(person, person, &faces[0].1).unwrap();
        }
        m
    };

    let m = gallery(None);
    let (mut same, mut others, mut leads, mut failures, mut accepted) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0);
    for (person, faces) in &emb {
        for (file, e) in &faces[1..] {
            let scores = m.scores(e).unwrap();
            let right = scores.iter().find(|s| s.0 == *person).unwrap().1;
            let other = scores.iter().filter(|s| s.0 != *person).map(|s| s.1);
            let other = other.fold(f32::NEG_INFINITY, f32::max);
            same.push(right);
            others.push(other);
            leads.push(right - other);
            if scores[0].0 != *person {
                failures.push(format!(
                    "{file} ({person}): top-1 is {} ({:.3}), {person} scores {right:.3}",
                    scores[0].0, scores[0].1
                ));
            }
            let r = m.best(e).unwrap();
            if r.person.is_some_and(|(id, _)| id == *person) {
                accepted += 1;
            }
        }
    }
    let probes = same.len();

    // Strangers: one-photo people against the full gallery, each person against the others.
    let (mut stranger_best, mut stranger_leads) = (Vec::new(), Vec::new());
    let mut judge = |m: &Matcher, who: &str, file: &str, e: &[f32], failures: &mut Vec<String>| {
        let r = m.best(e).unwrap();
        stranger_best.push(r.score);
        if r.score >= policy.threshold {
            stranger_leads.push(r.score - r.second.unwrap_or(f32::NEG_INFINITY));
        }
        if let Some((id, _)) = r.person {
            failures.push(format!(
                "{file} ({who}, not enrolled) matched {id} with {:.3} (second {:?})",
                r.score, r.second
            ));
        }
    };
    for photo in &singles {
        let e = portrait_embedding(p, &photo.file);
        judge(&m, &photo.person, &photo.file, &e, &mut failures);
    }
    for (person, faces) in &emb {
        let without = gallery(Some(person));
        for (file, e) in faces {
            judge(&without, person, file, e, &mut failures);
        }
    }
    let report = format!(
        "{}: {probes} probes of {} enrolled people: top-1 correct {}/{probes}, accepted {accepted}/{probes}; \
         same-person scores {}, best other person {}, smallest lead of the right person {:.3}; \
         {} stranger probes: best scores {}, leads of those above the threshold {}; policy {policy:?}",
        p.embedder.model_id(),
        enrolled.len(),
        probes - failures.iter().filter(|f| f.contains("top-1")).count(),
        show_range(&same),
        show_range(&others),
        range(&leads).0,
        stranger_best.len(),
        show_range(&stranger_best),
        show_range(&stranger_leads),
    );
    assert!(failures.is_empty(), "{report}\n{}", failures.join("\n"));
    // Acceptance also needs the threshold and margin; allow a hard pair or two.
    assert!(accepted * 10 >= probes * 9, "too few right matches accepted by the policy: {report}");
    report
}

#[test]
fn identifies_enrolled_people_with_sface() {
    let emb = sface();
    let policy = MatchPolicy { threshold: emb.spec().match_threshold, ..MatchPolicy::default() };
    let mut p = pipeline(Box::new(emb));
    let report = check_accuracy(&mut p, policy);
    eprintln!("{report}");
}

#[test]
fn group_photo_gives_one_result_per_face_and_non_faces_none() {
    let mut p = pipeline(Box::new(sface()));
    let photos = photos();
    let groups: Vec<&Photo> = photos.iter().filter(|p| p.person == "group").collect();
    assert!(!groups.is_empty(), "no group photo in photos.tsv");
    for g in groups {
        let out = p.analyse(&load(&g.file)).unwrap();
        let verdicts: Vec<String> =
            out.iter().map(|o| format!("{:?} {:?}", o.detection.bbox, o.verdict)).collect();
        assert_eq!(out.len(), 3, "{}: expected 3 faces, got {verdicts:#?}", g.file);
        assert!(
            out.iter().all(|o| o.embedding().is_some()),
            "{}: a face was rejected: {verdicts:#?}",
            g.file
        );
    }
    for n in photos.iter().filter(|p| p.person == "none") {
        let out = p.analyse(&load(&n.file)).unwrap();
        assert!(
            out.is_empty(),
            "{}: expected no face, got {:?}",
            n.file,
            out.iter().map(|o| &o.detection).collect::<Vec<_>>()
        );
    }
}

#[test]
fn real_faces_pass_the_quality_gate_at_defaults() {
    let mut det = detector();
    let gate = QualityGate::new(QualitySpec::default());
    let (mut seen, mut rejected) = (Vec::new(), Vec::new());
    for photo in photos().iter().filter(|p| p.person != "none") {
        let img = load(&photo.file);
        for d in det.detect(&img).unwrap() {
            let crop = align_face(&img, &d.landmarks, 112);
            let sharp = redeye::vision::laplacian_variance(&crop);
            seen.push(format!("{} {:.0}px {:.2} {sharp:.0}", photo.file, d.bbox.w.min(d.bbox.h), d.score));
            if let Err(r) = gate.check(&d, &crop) {
                rejected.push(format!("{}: {r}", photo.file));
            }
            // The same crop blurred must be caught.
            let blurred = image::imageops::blur(&crop, 3.0);
            assert!(
                gate.check(&d, &blurred).is_err(),
                "{}: blurred crop passes ({:.1})",
                photo.file,
                redeye::vision::laplacian_variance(&blurred)
            );
        }
    }
    eprintln!("faces (file, size, score, sharpness): {seen:?}");
    assert!(rejected.is_empty(), "real faces rejected at defaults: {rejected:?}");
}

#[test]
fn mobilefacenet_works_by_configuration_and_batches() {
    let spec = mobilefacenet_spec();
    let mut emb =
        OnnxEmbedder::load(runtime(), spec, &SessionOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((emb.dim(), emb.model_id()), (192, "mobilefacenet-192d"));
    // 40 crops (two batches: 32 + 8) give the same embeddings as one-by-one.
    let crops: Vec<RgbImage> = goldens()
        .iter()
        .flat_map(|g| g.faces.iter().map(|f| image::open(golden_dir().join(&f.crop)).unwrap().into_rgb8()))
        .cycle()
        .take(40)
        .collect();
    let batched = emb.embed(&crops).unwrap();
    assert_eq!(batched.len(), crops.len());
    for (c, b) in crops.iter().zip(&batched) {
        let single = emb.embed(std::slice::from_ref(c)).unwrap().remove(0);
        assert!(cosine(&single, b) > 0.9999, "batched and single embeddings differ");
        assert!((cosine(b, b) - 1.0).abs() < 1e-4, "not normalised");
    }
    let policy = MatchPolicy { threshold: emb.spec().match_threshold, ..MatchPolicy::default() };
    let mut p = pipeline(Box::new(emb));
    eprintln!("{}", check_accuracy(&mut p, policy));
}

#[test]
fn spec_mismatches_are_clear_errors() {
    let sface_model = model("face_recognition_sface_2021dec_fp32.onnx");
    let load =
        |spec: RecognizerSpec| OnnxEmbedder::load(runtime(), spec, &SessionOptions::default()).err().unwrap();
    let base = RecognizerSpec { model: sface_model.clone(), ..RecognizerSpec::default() };
    let cases = [
        (RecognizerSpec { input: "input".into(), ..base.clone() }, "no input named `input`"),
        (RecognizerSpec { output: "embeddings".into(), ..base.clone() }, "no output named `embeddings`"),
        (RecognizerSpec { dim: 192, ..base.clone() }, "expected [N, 192]"),
        (RecognizerSpec { max_batch: 32, ..base.clone() }, "fixed at 1 but max_batch is 32"),
        (RecognizerSpec { input_size: 128, ..base.clone() }, "expected [N, 3, 128, 128]"),
    ];
    for (spec, want) in cases {
        let err = load(spec);
        let msg = err.to_string();
        assert!(matches!(err, VisionError::ModelMismatch { .. }), "{msg}");
        assert!(msg.contains(want) && msg.contains(&*sface_model.to_string_lossy()), "{msg}");
    }
    let missing = load(RecognizerSpec { model: "/nonexistent/model.onnx".into(), ..base });
    assert!(missing.to_string().contains("/nonexistent/model.onnx"), "{missing}");
    // A recogniser is not a detector.
    let spec = DetectorSpec { model: sface_model, ..DetectorSpec::default() };
    let err = YuNet::load(runtime(), spec, &SessionOptions::default()).err().unwrap().to_string();
    assert!(err.contains("no input named `input`"), "{err}");
}
