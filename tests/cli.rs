//! The command-line client against a real Redis and the real models: enroll, gallery, identify
//! (twice: the second answer comes from the cache), forget, and bad photos.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use redeye::config::REDIS_URL_ENV;
use serde_json::Value;
use support::config::{Camera, Group, TestConfig};
use support::photo;
use support::process::redeye_command;
use support::redis::RedisServer;

/// A Redis server and a config in a temp dir pointing at the repository's models.
struct Env {
    redis: RedisServer,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Env {
    fn new() -> Env {
        let redis = RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        // No Redis address in the file: `REDEYE_REDIS_URL` gives it, as an operator's would.
        let config = TestConfig::new("cli-test")
            .redis_key("cache_ttl_secs", 600)
            .group(Group::new("lobby").camera(Camera::unused("door")))
            .write(dir.path());
        Env { redis, dir, config }
    }

    fn redeye(&self, args: &[&str]) -> Output {
        redeye_command(&self.config)
            .args(args)
            .env(REDIS_URL_ENV, self.redis.url())
            .env("REDEYE_LOG", "warn")
            .output()
            .expect("run redeye")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.redeye(args);
        assert!(out.status.success(), "redeye {args:?} failed:\n{}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    fn enroll(&self, name: &str, photos: &[&str]) -> String {
        let paths: Vec<String> = photos.iter().map(|p| photo(p).display().to_string()).collect();
        let mut args = vec!["enroll", "--name", name];
        args.extend(paths.iter().map(String::as_str));
        self.ok(&args)
    }

    /// `identify --local` on files (no worker runs here); one parsed JSON line per face.
    fn identify(&self, files: &[&Path]) -> Vec<Value> {
        let mut args = vec!["identify".to_owned(), "--local".to_owned()];
        args.extend(files.iter().map(|f| f.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ok(&args).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn person(line: &Value) -> Option<&str> {
    line["person"]["id"].as_str()
}

#[test]
fn enroll_identify_from_cache_then_forget() {
    let env = Env::new();
    let out = env.enroll("Barack Obama", &["obama.jpg"]);
    assert!(out.contains("enrolled Barack Obama (barack-obama) from 1 photo"), "{out}");
    env.enroll("Joe Biden", &["biden.jpg"]);
    env.enroll("Nicolas Cage", &["cage.jpg"]);
    env.enroll("Sean Connery", &["SeanConnery.jpg"]);
    env.enroll("Franck", &["franck_01829.jpg", "franck_02045.jpg"]);

    let listing = env.ok(&["gallery"]);
    assert!(listing.starts_with("5 people, gallery version "), "{listing}");
    assert!(listing.contains("franck") && listing.contains("  2 embedding(s)"), "{listing}");

    // First identify: recognised here and cached.
    let probe = photo("obama2.jpg");
    let first = env.identify(&[&probe]);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(person(&first[0]), Some("barack-obama"), "{first:?}");
    assert_eq!(first[0]["cached"], false);
    let md5 = hex::encode(<md5::Md5 as md5::Digest>::digest(std::fs::read(&probe).unwrap()));
    assert_eq!(first[0]["md5"], md5.as_str());
    let ttl: i64 = env.redis.query(redis::cmd("TTL").arg(format!("image:{md5}")));
    assert!(ttl > 500, "result not cached under image:{md5} with the configured TTL: {ttl}");

    // Second identify: the same answer, from Redis.
    let second = env.identify(&[&probe]);
    assert_eq!(second[0]["cached"], true, "{second:?}");
    assert_eq!(second[0]["person"], first[0]["person"]);
    assert_eq!(second[0]["score"], first[0]["score"]);

    // Other people, and the group photo gives one line per face.
    let lines = env.identify(&[&photo("cage2_crop.jpg"), &photo("franck_04117.jpg"), &photo("faces.jpg")]);
    assert_eq!(person(&lines[0]), Some("nicolas-cage"), "{lines:?}");
    assert_eq!(person(&lines[1]), Some("franck"), "{lines:?}");
    let group: Vec<&Value> =
        lines.iter().filter(|l| l["file"].as_str().unwrap().ends_with("faces.jpg")).collect();
    assert_eq!(group.len(), 3, "{lines:?}");
    assert!(group.iter().all(|l| l["bbox"]["w"].as_f64().unwrap() > 10.0), "{group:?}");

    // Forget bumps the gallery version: the cached answer naming Obama is not served again.
    let out = env.ok(&["forget", "Barack Obama"]);
    assert!(out.contains("forgot barack-obama"), "{out}");
    let after = env.identify(&[&probe]);
    assert_eq!(after[0]["cached"], false, "{after:?}");
    assert_ne!(person(&after[0]), Some("barack-obama"), "{after:?}");
    assert!(!env.ok(&["gallery"]).contains("barack-obama"));

    // Forgetting someone unknown says so.
    let out = env.redeye(&["forget", "Nobody Here"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("nobody called Nobody Here is enrolled"), "{}", text(&out));
}

#[test]
fn enroll_refuses_photos_without_exactly_one_usable_face() {
    let env = Env::new();
    let paths = [photo("faces.jpg"), photo("skullmask.jpg"), photo("obama.jpg")];
    let mut args = vec!["enroll", "--name", "Someone"];
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    args.extend(shown.iter().map(String::as_str));
    let out = env.redeye(&args);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("faces.jpg: refused: 3 usable faces found (face 1 at ("), "{msg}");
    assert!(msg.contains("skullmask.jpg: refused: no face found"), "{msg}");
    assert!(msg.contains("enrolled nothing: 2 of 3 photos refused"), "{msg}");
    assert!(env.ok(&["gallery"]).starts_with("0 people"), "nothing may be enrolled");
}

#[test]
fn bad_photos_get_clear_errors_and_the_rest_is_still_answered() {
    let env = Env::new();
    env.enroll("Joe Biden", &["biden.jpg"]);
    let dir = env.dir.path();
    let good = std::fs::read(photo("biden.jpg")).unwrap();
    // A JPEG that stops right after its scan header: no image data at all. (A file cut inside
    // the scan data decodes partially, like in every viewer, and is not an error.)
    let corrupt = dir.join("corrupt.jpg");
    let scan = good.windows(2).rposition(|x| x == [0xFF, 0xDA]).expect("a JPEG has a scan");
    std::fs::write(&corrupt, &good[..scan + 6]).unwrap();
    let text_file = dir.join("notes.jpg");
    std::fs::write(&text_file, "this is a text file, not a photo\n").unwrap();
    let huge = dir.join("huge.jpg");
    std::fs::write(&huge, claim_size(&good, 20000, 20000)).unwrap();

    let files = [corrupt.as_path(), text_file.as_path(), huge.as_path()];
    let mut args = vec!["identify".to_owned(), "--local".to_owned()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    args.push(photo("biden.jpg").display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.redeye(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!stderr.contains("panicked"), "{stderr}");
    for (file, reason) in [(&corrupt, "corrupt"), (&text_file, "not an image"), (&huge, "20000x20000")] {
        let line = stderr.lines().find(|l| l.contains(&*file.display().to_string()));
        let line = line.unwrap_or_else(|| panic!("no error naming {}:\n{stderr}", file.display()));
        assert!(line.contains(reason), "{line}");
    }
    // The good photo after the bad ones is still answered.
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(person(&lines[0]), Some("joe-biden"));
}

/// A copy of a baseline JPEG whose SOF0 header claims `w` x `h` pixels. The last SOF0 is the
/// main image's: an EXIF thumbnail, if any, comes first.
fn claim_size(jpeg: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let sof = out.windows(2).rposition(|x| x == [0xFF, 0xC0]).expect("a baseline JPEG has SOF0");
    out[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    out[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    out
}
