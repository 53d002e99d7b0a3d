//! Real Redis for tests: a `redis-server` on a free loopback port in a temp dir, a 3-master
//! Redis Cluster, and a Sentinel watching a server.
//!
//! Servers run without persistence (`--save '' --appendonly no`), log to a file in their temp
//! dir, and are killed with SIGKILL on drop. If the test is panicking at that point, the tail of
//! the log goes to stderr, so a failure shows what the server saw. A missing `redis-server` is a
//! failure that says how to install it, never a skip.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::Value;

use super::free_port;

const SETUP: &str = "run `make setup` (scripts/setup.sh), which installs redis-server and redis-tools";
/// A fresh server answers in a few ms; allow for a loaded machine running tests in parallel.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts at finding a free port before giving up (another process may take the one we found).
const PORT_ATTEMPTS: usize = 5;

/// A running `redis-server` (or Sentinel) process; killed on drop.
pub struct RedisServer {
    port: u16,
    /// Arguments after the port ones: topology options, `--requirepass`, a config file.
    args: Vec<String>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// A plain server on a free port.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// A server with extra `redis-server` arguments, e.g. `["--requirepass", "pw"]`.
    pub fn start_with(args: &[&str]) -> RedisServer {
        RedisServer::start_in(tempfile::tempdir().expect("temp dir for redis-server"), args)
    }

    /// A Sentinel on a free port monitoring `master` under `master_name` (quorum 1, master
    /// considered down after 1 s). Quorum 1 suits a lone sentinel; with several, use
    /// [`RedisServer::start_sentinel_with_quorum`] and a majority.
    pub fn start_sentinel(master: &RedisServer, master_name: &str) -> RedisServer {
        RedisServer::start_sentinel_with_quorum(master, master_name, 1)
    }

    /// A Sentinel on a free port monitoring `master` under `master_name`: `quorum` sentinels
    /// must agree the master is down (2 of 3 is the usual majority), after 1 s without an
    /// answer; a failover that stalls is retried after 5 s.
    pub fn start_sentinel_with_quorum(master: &RedisServer, master_name: &str, quorum: u32) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir for a sentinel");
        // Sentinel rewrites its config file, so it gets a writable one in its own directory.
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "sentinel monitor {master_name} 127.0.0.1 {} {quorum}\n\
                 sentinel down-after-milliseconds {master_name} 1000\n\
                 sentinel failover-timeout {master_name} 5000\n",
                master.port()
            ),
        )
        .expect("write sentinel.conf");
        let conf = conf.to_str().expect("UTF-8 temp path").to_owned();
        RedisServer::start_in(dir, &[&conf, "--sentinel"])
    }

    /// A replica of `master` (`--replicaof`), started without waiting for the initial sync
    /// (see [`RedisServer::wait_replica_synced`]).
    pub fn start_replica_of(master: &RedisServer) -> RedisServer {
        RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port().to_string()])
    }

    /// Waits until this replica's link to its master is up (initial sync done).
    pub fn wait_replica_synced(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let info: String = self.query(redis::cmd("INFO").arg("replication"));
            if info.contains("master_link_status:up") {
                return;
            }
            assert!(Instant::now() < deadline, "replica :{} not in sync in time:\n{info}", self.port());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn start_in(dir: tempfile::TempDir, args: &[&str]) -> RedisServer {
        let args = args.iter().map(|a| a.to_string()).collect();
        let mut server = RedisServer { port: 0, args, child: None, dir };
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return server,
                // Someone took the port between our probe and redis-server's bind: try another.
                Err(log) if log.contains("Address already in use") => last_log = log,
                Err(log) => panic!("redis-server did not start:\n{log}"),
            }
        }
        panic!("redis-server found no free port in {PORT_ATTEMPTS} attempts:\n{last_log}");
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (also holds its log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A synchronous connection for setting up and checking state around the code under test.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url()))
    }

    /// Every event on `<prefix>:events`, in order; panics on one that does not parse.
    pub fn events(&self, prefix: &str) -> Vec<redeye::visit::AnyEvent> {
        let rows: Vec<(String, std::collections::HashMap<String, Vec<u8>>)> =
            self.query(redis::cmd("XRANGE").arg(format!("{prefix}:events")).arg("-").arg("+"));
        rows.into_iter()
            .map(|(id, f)| {
                redeye::visit::AnyEvent::from_json(&f["event"])
                    .unwrap_or_else(|e| panic!("event {id} does not parse: {e}"))
            })
            .collect()
    }

    /// The visit events on `<prefix>:events`, in order.
    pub fn visit_events(&self, prefix: &str) -> Vec<redeye::visit::VisitEvent> {
        self.events(prefix)
            .into_iter()
            .filter_map(|e| match e {
                redeye::visit::AnyEvent::Visit(v) => Some(v),
                redeye::visit::AnyEvent::Face(_) => None,
            })
            .collect()
    }

    /// Runs one command and returns its reply, panicking with the error otherwise.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        cmd.query(&mut self.connection()).unwrap_or_else(|e| panic!("{cmd:?} on {}: {e}", self.url()))
    }

    /// Kills the server (SIGKILL: a crash, not a shutdown) and waits for it to exit.
    pub fn stop(&mut self) {
        super::kill(&mut self.child);
    }

    /// Starts the server again on the same port, with the same arguments and directory.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.spawn() {
            panic!("redis-server did not restart on port {}:\n{log}", self.port);
        }
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        super::tail(&self.log_path(), lines)
    }

    fn log_path(&self) -> std::path::PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Starts the process and waits until it answers PING. Err holds the log when it exited.
    fn spawn(&mut self) -> Result<(), String> {
        let dir = self.dir.path().to_str().expect("UTF-8 temp path").to_owned();
        let log = self.log_path().to_str().expect("UTF-8 temp path").to_owned();
        let mut cmd = Command::new("redis-server");
        // A config file (an absolute path, as the sentinel's) must be the first argument.
        let (file, rest) = match self.args.split_first() {
            Some((first, rest)) if first.starts_with('/') => (Some(first), rest),
            _ => (None, &self.args[..]),
        };
        cmd.args(file);
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--dir", &dir, "--logfile", &log]);
        cmd.args(["--save", "", "--appendonly", "no", "--daemonize", "no"]);
        cmd.args(rest);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => panic!("redis-server not found on PATH: {SETUP}"),
            _ => panic!("cannot run redis-server: {e}"),
        });
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(format!("exited with {status}; log:\n{}", self.log_tail(30)));
            }
            if answers_ping(self.port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                panic!(
                    "redis-server on port {} did not answer PING within {READY_TIMEOUT:?}:\n{}",
                    self.port,
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() && std::thread::panicking() {
            eprintln!("--- redis-server :{} log (last 30 lines) ---\n{}\n---", self.port, self.log_tail(30));
        }
        self.stop();
    }
}

/// A Redis Cluster of `n` masters without replicas.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `n` cluster-enabled servers, joins them with `redis-cli --cluster create`, and
    /// waits until every node reports `cluster_state:ok`.
    pub fn start(n: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..n)
            .map(|_| {
                // The bus port defaults to port + 10000, which overflows for high ephemeral
                // ports: pick it explicitly.
                let bus = free_port().to_string();
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    "5000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|s| format!("127.0.0.1:{}", s.port())).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}): {SETUP}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok();
        cluster
    }

    fn wait_until_ok(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        for node in &self.nodes {
            loop {
                let info: String = node.query(redis::cmd("CLUSTER").arg("INFO"));
                if info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384") {
                    break;
                }
                assert!(Instant::now() < deadline, "cluster node :{} not ok in time:\n{info}", node.port());
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Seed URLs, one per master.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The servers, in start order.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The URL of node `i`.
    pub fn node_url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// Index of the node serving `key`'s slot (`CLUSTER KEYSLOT`, then `CLUSTER SLOTS`).
    pub fn node_for_key(&self, key: &str) -> usize {
        let slot: i64 = self.nodes[0].query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key));
        let ranges: Vec<Value> = self.nodes[0].query(redis::cmd("CLUSTER").arg("SLOTS"));
        for range in ranges {
            let Value::Array(parts) = range else { panic!("CLUSTER SLOTS row: {range:?}") };
            let (Value::Int(lo), Value::Int(hi), Value::Array(master)) = (&parts[0], &parts[1], &parts[2])
            else {
                panic!("CLUSTER SLOTS row: {parts:?}")
            };
            if (*lo..=*hi).contains(&slot) {
                let Value::Int(port) = master[1] else { panic!("CLUSTER SLOTS master: {master:?}") };
                return self
                    .nodes
                    .iter()
                    .position(|n| i64::from(n.port()) == port)
                    .expect("slot owner is ours");
            }
        }
        panic!("no node serves slot {slot} of {key}");
    }

    /// Index of a node that does not serve `key`'s slot.
    pub fn node_not_for_key(&self, key: &str) -> usize {
        (self.node_for_key(key) + 1) % self.nodes.len()
    }
}

/// Whether something on `port` answers PING like a Redis that accepts commands (or that wants
/// a password first, which is also "up").
fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    if BufReader::new(&stream).read_line(&mut line).is_err() {
        return false;
    }
    // -LOADING means the port is ours but not ready yet.
    line.starts_with("+PONG") || line.starts_with("-NOAUTH")
}
