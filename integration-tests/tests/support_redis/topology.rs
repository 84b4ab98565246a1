//! A local Redis Cluster (3 masters) and a Sentinel setup (master, replica,
//! one sentinel), started from the local `redis-server` binary on free
//! loopback ports in a temporary directory, removed on drop.
//!
//! These are not (yet) part of `integration_tests::fixtures`; without
//! `redis-server`/`redis-cli` on `PATH` the tests print why and skip (or fail
//! when `PURISTA_TEST_REQUIRE_SERVICES=1`).

use integration_tests::{
    fixtures::unavailable,
    ports::{free_port, free_port_with_bus},
};
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const SERVER_BIN: &str = "redis-server";
const CLI_BIN: &str = "redis-cli";

/// Child processes and their directory, killed and removed on drop.
#[derive(Debug)]
struct Processes {
    dir: PathBuf,
    children: Vec<(u16, Child)>,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn binaries_present() -> bool {
    [SERVER_BIN, CLI_BIN].iter().all(|b| {
        Command::new(b).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
    })
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(purista_core::testkit::unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `redis-cli -p port args...` and returns its output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new(CLI_BIN)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Polls `ok` until it holds; otherwise an error naming `what`.
fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{what} not reached within {limit:?}"))
}

/// Starts a topology, on fresh ports again when an attempt fails (a port
/// taken by another test process meanwhile); the last failure panics with the
/// processes' logs.
fn with_retries<T>(what: &str, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    let mut failures = Vec::new();
    for _ in 0..3 {
        match attempt() {
            Ok(started) => return started,
            Err(why) => {
                eprintln!("[purista-test] {what} did not start, retrying on other ports: {why}");
                failures.push(why);
            }
        }
    }
    panic!("{what} did not start in 3 attempts:\n{}", failures.join("\n---\n"));
}

impl Processes {
    fn new(name: &str) -> Processes {
        Processes { dir: temp_dir(name), children: Vec::new() }
    }

    /// Starts `redis-server args` and waits until *this* process answers on
    /// `port` (its `process_id`, not just anyone's `PONG`).
    fn spawn(&mut self, port: u16, args: &[String]) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.join(format!("{port}.log"))).unwrap();
        let child = Command::new(SERVER_BIN)
            .args(args)
            .current_dir(&self.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start redis-server");
        let pid = format!("process_id:{}\r", child.id());
        self.children.push((port, child));
        let answered =
            wait_until(&format!("redis-server on {port} answering"), Duration::from_secs(20), || {
                cli(port, &["INFO", "server"]).contains(&pid)
            });
        answered.map_err(|why| self.failure(why))
    }

    /// `why`, with whether each process still runs and the tail of its log.
    fn failure(&mut self, why: String) -> String {
        let mut report = why;
        for (port, child) in &mut self.children {
            let state = match child.try_wait() {
                Ok(Some(status)) => format!("exited ({status})"),
                _ => "running".to_owned(),
            };
            let log = std::fs::read_to_string(self.dir.join(format!("{port}.log"))).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(12)..].join("\n  ");
            report.push_str(&format!("\n[port {port}, {state}]\n  {tail}"));
        }
        report
    }
}

fn server_args(port: u16, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A 3-master Redis Cluster on loopback ports.
#[derive(Debug)]
pub struct Cluster {
    procs: Processes,
    pub ports: Vec<u16>,
}

impl Cluster {
    /// Starts the cluster and waits until every node reports `cluster_state:ok`.
    pub fn start() -> Option<Cluster> {
        if !binaries_present() {
            return unavailable(
                "Redis Cluster: no redis-server/redis-cli on PATH (apt-get install redis-server)",
            );
        }
        Some(with_retries("Redis Cluster", Self::try_start))
    }

    fn try_start() -> Result<Cluster, String> {
        let mut procs = Processes::new("redis-cluster");
        let ports: Vec<u16> = (0..3).map(|_| free_port_with_bus()).collect();
        for &port in &ports {
            let conf = format!("nodes-{port}.conf");
            let args = server_args(
                port,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &conf,
                    "--cluster-node-timeout",
                    "2000",
                ],
            );
            procs.spawn(port, &args)?;
        }
        let mut create: Vec<String> = vec!["--cluster".into(), "create".into()];
        create.extend(ports.iter().map(|p| format!("127.0.0.1:{p}")));
        create.extend(["--cluster-replicas".into(), "0".into(), "--cluster-yes".into()]);
        let out = Command::new(CLI_BIN).args(&create).output().expect("redis-cli --cluster create");
        if !out.status.success() {
            let why = format!("cluster create: {}", String::from_utf8_lossy(&out.stdout));
            return Err(procs.failure(why));
        }
        for &port in &ports {
            wait_until("cluster_state:ok", Duration::from_secs(30), || {
                cli(port, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
            })
            .map_err(|why| procs.failure(why))?;
        }
        Ok(Cluster { procs, ports })
    }

    /// `redis-cluster://` URL naming every node.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.ports[1..].iter().map(|p| format!("node=127.0.0.1:{p}")).collect();
        format!("redis-cluster://127.0.0.1:{}?{}", self.ports[0], nodes.join("&"))
    }

    /// The temporary directory (for logs).
    pub fn dir(&self) -> &std::path::Path {
        &self.procs.dir
    }
}

/// A master, a replica and one sentinel (quorum 1) on loopback ports.
#[derive(Debug)]
pub struct Sentinel {
    procs: Processes,
    pub master: u16,
    pub replica: u16,
    pub sentinel: u16,
}

/// The service name the sentinel monitors.
pub const SERVICE: &str = "purista";

impl Sentinel {
    /// Starts the three processes and waits until the sentinel knows the replica.
    pub fn start() -> Option<Sentinel> {
        if !binaries_present() {
            return unavailable(
                "Redis Sentinel: no redis-server/redis-cli on PATH (apt-get install redis-server)",
            );
        }
        Some(with_retries("Redis Sentinel", Self::try_start))
    }

    fn try_start() -> Result<Sentinel, String> {
        let mut procs = Processes::new("redis-sentinel");
        let (master, replica, sentinel) = (free_port(), free_port(), free_port());
        procs.spawn(master, &server_args(master, &[]))?;
        let m = master.to_string();
        procs.spawn(replica, &server_args(replica, &["--replicaof", "127.0.0.1", &m]))?;
        wait_until("replica in sync", Duration::from_secs(30), || {
            cli(replica, &["INFO", "replication"]).contains("master_link_status:up")
        })
        .map_err(|why| procs.failure(why))?;
        let conf = procs.dir.join("sentinel.conf");
        // failover-timeout bounds the promotion: 20 s, as a loaded machine can
        // be slow to promote.
        std::fs::write(
            &conf,
            format!(
                "port {sentinel}\nbind 127.0.0.1\nprotected-mode no\n\
                 sentinel monitor {SERVICE} 127.0.0.1 {master} 1\n\
                 sentinel down-after-milliseconds {SERVICE} 2000\n\
                 sentinel failover-timeout {SERVICE} 20000\n"
            ),
        )
        .unwrap();
        procs.spawn(sentinel, &[conf.to_string_lossy().into_owned(), "--sentinel".into()])?;
        // Sentinel learns of replicas from the master's INFO (every 10 s).
        let mut last = String::new();
        wait_until("sentinel knows the replica", Duration::from_secs(30), || {
            last = cli(sentinel, &["SENTINEL", "REPLICAS", SERVICE]);
            last.contains(&format!("127.0.0.1:{replica}"))
        })
        .map_err(|why| procs.failure(format!("{why}; SENTINEL REPLICAS answered: {last:?}")))?;
        Ok(Sentinel { procs, master, replica, sentinel })
    }

    /// `redis-sentinel://` URL.
    pub fn url(&self) -> String {
        format!("redis-sentinel://127.0.0.1:{}?sentinelServiceName={SERVICE}", self.sentinel)
    }

    /// The port the sentinel currently names as master.
    pub fn current_master(&self) -> u16 {
        let out = cli(self.sentinel, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE]);
        out.lines().nth(1).and_then(|p| p.trim().parse().ok()).unwrap_or(0)
    }

    /// The temporary directory (for logs).
    pub fn dir(&self) -> &std::path::Path {
        &self.procs.dir
    }
}
