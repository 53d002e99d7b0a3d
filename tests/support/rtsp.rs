//! A real RTSP server for tests: `scripts/rtsp_server.py` (GStreamer's gst-rtsp-server) on a free
//! loopback port, serving mp4 files without re-encoding.
//!
//! Missing GStreamer or python3-gi is a failure that says to run the setup, never a skip. The
//! server's stderr goes to a log file that is printed if the test panics while the server is
//! alive, so a failure shows what the server saw.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::free_port;

/// Debian's python, which has `gi`; a pyenv python first on PATH does not.
const PYTHON: &str = "/usr/bin/python3";
const SETUP: &str =
    "run make setup (it installs python3-gi, gir1.2-gst-rtsp-server-1.0 and the GStreamer plugins)";
/// The server listens about 1 s after start; allow for a loaded machine.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `scripts/rtsp_server.py`; killed on drop.
pub struct RtspServer {
    port: u16,
    mounts: Vec<(String, PathBuf)>,
    /// Options before the port: `--loop`, `--freeze-after S`.
    options: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl RtspServer {
    /// Starts a server on a free port with each `(mount, file)` at `rtsp://127.0.0.1:<port>/<mount>`
    /// and waits until it listens. Each clip plays once; then the session stays open with no more
    /// video, as a camera that froze.
    pub fn start(mounts: &[(&str, &Path)]) -> RtspServer {
        Self::start_with(mounts, &[])
    }

    /// [`RtspServer::start`], but each clip replays without end, as a live camera.
    pub fn start_looping(mounts: &[(&str, &Path)]) -> RtspServer {
        Self::start_with(mounts, &["--loop".into()])
    }

    /// [`RtspServer::start`], but the video of each session stops after `after` while the
    /// session stays open and RTCP goes on, as from a camera whose encoder hung.
    pub fn start_freezing(mounts: &[(&str, &Path)], after: Duration) -> RtspServer {
        Self::start_with(mounts, &["--freeze-after".into(), after.as_secs_f64().to_string()])
    }

    fn start_with(mounts: &[(&str, &Path)], options: &[String]) -> RtspServer {
        check_gstreamer();
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir for the RTSP server log");
        let mut server = RtspServer {
            port,
            mounts: mounts.iter().map(|(m, f)| (m.to_string(), f.to_path_buf())).collect(),
            options: options.to_vec(),
            child: None,
            log: dir.path().join("rtsp_server.log"),
            _dir: dir,
        };
        server.spawn();
        server
    }

    /// `rtsp://127.0.0.1:<port>/<mount>`.
    pub fn url(&self, mount: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{}", self.port, mount.trim_start_matches('/'))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL: clients see their connections reset, as when a camera dies).
    pub fn stop(&mut self) {
        super::kill(&mut self.child);
    }

    /// Starts the server again on the same port with the same mounts.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/rtsp_server.py");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("RTSP server log file");
        let deadline = Instant::now() + READY_TIMEOUT;
        // The port was free when chosen, but after a kill it may take a moment to be bindable
        // again; retry while the script reports that it cannot listen.
        loop {
            let mut cmd = Command::new(PYTHON);
            cmd.arg(&script).args(&self.options).arg(self.port.to_string());
            for (mount, file) in &self.mounts {
                cmd.arg(format!("{mount}={}", file.display()));
            }
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log.try_clone().expect("log handle"))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {PYTHON} {}: {e}; {SETUP}", script.display()));
            let stdout = child.stdout.take().expect("piped stdout");
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.trim() == "ready" {
                        let _ = tx.send(());
                    }
                }
            });
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(()) => {
                    self.child = Some(child);
                    return;
                }
                // stdout closed: the script exited. Status 3 means the port could not be bound
                // (yet); anything else is a broken setup.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().ok();
                    if status.and_then(|s| s.code()) != Some(3) || Instant::now() >= deadline {
                        panic!("RTSP server exited ({status:?}); {SETUP}; log:\n{}", self.log());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "RTSP server on port {} not ready after {READY_TIMEOUT:?}; log:\n{}",
                        self.port,
                        self.log()
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- RTSP server log (port {}) ---\n{}--- end ---", self.port, self.log());
        }
        self.stop();
    }
}

/// Panics with the setup hint when Debian's python cannot load GStreamer's RTSP server.
fn check_gstreamer() {
    let probe = "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); \
                 from gi.repository import Gst, GstRtspServer; Gst.init(None); \
                 missing = [e for e in ('qtdemux', 'h264parse', 'rtph264pay', 'appsrc', 'appsink') if Gst.ElementFactory.find(e) is None]; \
                 assert not missing, missing";
    let out = Command::new(PYTHON).args(["-c", probe]).output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "GStreamer RTSP server unavailable: {}; {SETUP}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("cannot run {PYTHON}: {e}; {SETUP}"),
    }
}
