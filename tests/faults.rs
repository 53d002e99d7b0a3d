//! Fatal faults of the long-running loops: they stop what they affect, say why on `/ready` and
//! in the log, and are not retried as if Redis were away.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::config::{Camera, Group, TestConfig};
use support::faces::{self, Faces};
use support::process::Process;
use support::redis::RedisServer;
use support::{free_port, wait_until};

const PREFIX: &str = "faults";

fn get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    match agent.get(url).call() {
        Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

#[test]
fn a_worker_facing_a_gallery_of_another_model_fails_ready_with_the_reason_and_does_not_retry() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = TestConfig::new(PREFIX)
        .redis(&redis)
        .admin(admin)
        .group(Group::new("lobby").camera(Camera::unused("door")))
        .write(dir.path());

    // The gallery as `enroll` leaves it when run with MobileFaceNet (192-d) configured.
    let person =
        r#"{"id":"ada","name":"Ada","model":"mobilefacenet-192d","dim":192,"created":1,"updated":1}"#;
    let _: () =
        redis.query(redis::cmd("HSET").arg(format!("{PREFIX}:{{gallery}}:people")).arg("ada").arg(person));
    let embedding: Vec<u8> = (0..192).flat_map(|i| (i as f32 / 192.0).to_le_bytes()).collect();
    let _: () = redis.query(redis::cmd("SET").arg(format!("{PREFIX}:{{gallery}}:emb:ada")).arg(embedding));
    let _: i64 = redis.query(redis::cmd("INCR").arg(format!("{PREFIX}:{{gallery}}:version")));
    // One real crop waiting, so the worker has a batch and loads the gallery.
    let crop = Faces::load().crops("obama2.jpg", 1).remove(0);
    let entry = faces::entry(&crop, "door", "lobby", 1);
    let stream = format!("{PREFIX}:{{lobby}}:faces");
    let mut xadd = redis::cmd("XADD");
    xadd.arg(&stream).arg("*");
    for (k, v) in entry.to_fields() {
        xadd.arg(k).arg(v);
    }
    let _: String = redis.query(&xadd);

    let mut worker = Process::redeye(dir.path(), "recognize", &config, &["recognize", "--workers", "1"]);
    let ready = format!("http://{admin}/ready");
    let mut last = (0, String::new());
    wait_until(Duration::from_secs(60), "/ready to report the gallery fault", || {
        worker.assert_running();
        last = get(&ready);
        last.0 == 503 && last.1.contains("another model")
    });
    assert!(
        last.1.contains("mobilefacenet-192d") && last.1.contains("worker") && last.1.contains("lobby"),
        "the reason says which worker stopped and why: {:?}",
        last.1
    );
    // Stopped, not retrying: a few seconds later there is still exactly one error and no retry.
    std::thread::sleep(Duration::from_secs(3));
    worker.assert_running();
    let log = worker.log_text();
    assert!(!log.contains("retrying") && !log.contains("lost Redis"), "no retry loop:\n{log}");
    assert_eq!(log.matches("Worker stopped").count(), 1, "{log}");
    // Nothing lost: the crop is still pending for a worker with the right model, not dead.
    let pending: redis::Value = redis.query(redis::cmd("XPENDING").arg(&stream).arg("recognizers"));
    let redis::Value::Array(summary) = pending else { panic!("XPENDING: {pending:?}") };
    assert_eq!(summary.first(), Some(&redis::Value::Int(1)), "one entry pending: {summary:?}");
    let dead: i64 = redis.query(redis::cmd("XLEN").arg(format!("{PREFIX}:{{lobby}}:dead")));
    assert_eq!(dead, 0);
}
