//! Child processes for tests: `redeye` subcommands, and other servers such as Prometheus.
//!
//! A [`Process`] has its stderr in a log file, is killed (SIGKILL) on drop, and prints the
//! tail of its log when the test is failing, so a failure shows what the process saw. A
//! process a test means to stop is stopped on purpose: [`Process::kill`] is a crash,
//! [`Process::terminate`] a graceful shutdown that must succeed in time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use redeye::config::REDIS_URL_ENV;

use super::{photo, tail};

/// Lines of a process log shown in a failure.
const TAIL: usize = 40;

/// `redeye -c <config>`, ready for a subcommand and its arguments. `REDEYE_REDIS_URL` is removed,
/// so the config's Redis is the one used even if the developer's shell sets it; a test of the
/// override sets it again.
pub fn redeye_command(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_redeye"));
    cmd.arg("-c").arg(config).env_remove(REDIS_URL_ENV);
    cmd
}

/// `redeye -c <config> <args>`, run to completion.
pub fn run_redeye(config: &Path, args: &[&str]) -> Output {
    redeye_command(config).args(args).output().expect("run redeye")
}

/// `redeye enroll --name <name> <photo>` with a test photo; fails the test if it is refused.
pub fn enroll(config: &Path, name: &str, photo_file: &str) {
    let out = redeye_command(config)
        .args(["enroll", "--name", name])
        .arg(photo(photo_file))
        .output()
        .expect("run redeye enroll");
    assert!(out.status.success(), "enroll {name}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A running child process; killed on drop.
pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// Starts `cmd` with stdin and stdout closed and stderr in `log`. `setup` says how to
    /// install the program, for when it is not found.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf, setup: &str) -> Process {
        let file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file);
        let child = cmd.spawn().unwrap_or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => panic!("{name} not found: {setup}"),
            _ => panic!("cannot start {name}: {e}"),
        });
        Process { name: name.to_owned(), child: Some(child), log }
    }

    /// `redeye -c <config> <args>` logging at info into `<dir>/<name>.log`.
    pub fn redeye(dir: &Path, name: &str, config: &Path, args: &[&str]) -> Process {
        let mut cmd = redeye_command(config);
        cmd.args(args).env("REDEYE_LOG", "info");
        Process::spawn(name, cmd, dir.join(format!("{name}.log")), "build redeye (cargo build)")
    }

    /// The process id (a `redeye` consumer name contains `-<pid>-`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the process is running").id()
    }

    /// Its whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Fails the test, with the log, if the process has exited.
    pub fn assert_running(&mut self) {
        let exited = self.child.as_mut().map_or(Ok(None), Child::try_wait);
        if let Ok(Some(status)) = exited {
            panic!("{} exited ({status}):\n{}", self.name, self.log_tail(TAIL));
        }
        assert!(self.child.is_some(), "{} was stopped by the test", self.name);
    }

    /// Its exit status if it has exited (reaped), `None` while it runs.
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().expect("wait for the child"))
    }

    /// SIGKILL, and waits for the exit: a crash, with no chance to clean up.
    pub fn kill(&mut self) {
        super::kill(&mut self.child);
    }

    /// SIGTERM, then a successful exit within `limit`; fails the test otherwise.
    pub fn terminate(&mut self, limit: Duration) {
        let Some(mut child) = self.child.take() else { return };
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} ({})", self.name);
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the child") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not stop within {limit:?} of SIGTERM:\n{}", self.name, self.log_tail(TAIL));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{} exited with {status}:\n{}", self.name, self.log_tail(TAIL));
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- {} log (last {TAIL} lines) ---\n{}\n---", self.name, self.log_tail(TAIL));
        }
    }
}
