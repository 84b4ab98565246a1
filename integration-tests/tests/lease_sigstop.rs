//! A lock holder frozen with SIGSTOP past its TTL, in a process of its own:
//! while it is frozen the lease expires and another holder takes it and
//! writes; resumed, the frozen holder still believes it holds the lock and
//! writes again, and its fenced write must be refused, leaving the newer
//! holder's value. On Redis and on NATS, each on the shared test server.
//!
//! The binary plays both parts: run by the test harness it is the test;
//! started with `PURISTA_LEASE_HOLDER` set it is the holder, which takes the
//! lock, prints `token N`, then writes under it every 20 ms, printing `ok`
//! for each accepted write and `refused` (then exiting) for the first one
//! refused.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, ExitCode, Stdio},
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use integration_tests::fixtures::{self, signal};
use purista_core::{ErrorKind, Json, Lease, LockGuard, PutOptions, StateStore, testkit::unique};
use purista_nats_state_store::{NatsStateStore, Storage};
use purista_redis_state_store::RedisStateStore;

const HOLDER: &str = "PURISTA_LEASE_HOLDER";
/// Whole seconds, as NATS TTLs are.
const TTL: Duration = Duration::from_secs(1);
/// How long the holder stays frozen: well past its TTL.
const FROZEN: Duration = Duration::from_millis(2500);

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let runtime = runtime.expect("runtime");
    if let Ok(spec) = std::env::var(HOLDER) {
        return runtime.block_on(holder(&spec));
    }
    runtime.block_on(async {
        if let Some(server) = fixtures::redis().await {
            frozen_holder_is_fenced_out(Backend::Redis, server.url()).await;
        }
        if let Some(server) = fixtures::nats().await {
            frozen_holder_is_fenced_out(
                Backend::Nats(unique("sigstop").replace(['-', '.'], "_")),
                server.url(),
            )
            .await;
        }
    });
    println!("test lease_sigstop::frozen_holder_is_fenced_out (redis, nats) ... ok");
    ExitCode::SUCCESS
}

#[derive(Debug, Clone)]
enum Backend {
    Redis,
    /// On this bucket.
    Nats(String),
}

impl Backend {
    fn spec(&self, url: &str, name: &str) -> String {
        match self {
            Backend::Redis => format!("redis {url} - {name}"),
            Backend::Nats(bucket) => format!("nats {url} {bucket} {name}"),
        }
    }

    async fn connect(&self, url: &str) -> Arc<dyn StateStore> {
        match self {
            Backend::Redis => Arc::new(RedisStateStore::connect(url).await.expect("connect to Redis")),
            Backend::Nats(bucket) => {
                let builder = NatsStateStore::builder().server(url).bucket(bucket).storage(Storage::Memory);
                Arc::new(builder.connect().await.expect("connect to NATS"))
            }
        }
    }
}

async fn frozen_holder_is_fenced_out(backend: Backend, url: &str) {
    let name = unique("sigstop-lock");
    let resource = format!("{{{name}}}:resource");
    let store = backend.connect(url).await;
    let child = Command::new(std::env::current_exe().expect("this binary"))
        .env(HOLDER, backend.spec(url, &name))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the holder");
    let mut child = Reaped(child);
    let lines = read_lines(&mut child.0);
    let token = expect_line(&lines, "token ").parse::<u64>().expect("a token");
    expect_line(&lines, "ok");

    signal::send(child.0.id(), "STOP").expect("SIGSTOP the holder");
    signal::wait_stopped(child.0.id()).expect("the holder stops");
    let frozen = Instant::now();
    // Its lease runs out while it is frozen; another holder takes it and writes.
    let next = Lease::acquire(store.clone(), &name, TTL, FROZEN).await.expect("acquire");
    let next = next.expect("the frozen holder's lease expired");
    assert!(next.token() > token, "token {} after {token}", next.token());
    let mine = Json::from(serde_json::json!({ "holder": "second", "token": next.token() }));
    next.fenced_put(&resource, mine.clone(), PutOptions::default()).await.expect("the new holder writes");
    tokio::time::sleep(FROZEN.saturating_sub(frozen.elapsed())).await;
    signal::send(child.0.id(), "CONT").expect("SIGCONT the holder");

    expect_line(&lines, "refused");
    let status = child.0.wait().expect("the holder exits");
    assert!(status.success(), "the holder failed: {status}");
    assert_eq!(store.get_value(&resource).await.unwrap(), Some(mine), "the frozen holder's write landed");
    next.release().await.unwrap();
    for key in [resource, format!("{{{name}}}:fence")] {
        store.remove_state(&key).await.unwrap();
    }
    eprintln!("{backend:?}: the holder with token {token}, frozen {FROZEN:?}, was fenced out");
}

/// The holder process, killed if the test fails before it exits (resumed
/// first: a stopped process only dies once it runs).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            _ = signal::send(self.0.id(), "CONT");
            _ = self.0.kill();
            _ = self.0.wait();
        }
    }
}

/// The holder's stdout, line by line, on a channel.
fn read_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Skips lines until one starts with `prefix` (within 20 s); what follows it.
fn expect_line(lines: &mpsc::Receiver<String>, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.starts_with(prefix) => return line[prefix.len()..].to_owned(),
            Ok(_) => {}
            Err(e) => panic!("the holder printed no {prefix:?} line: {e}"),
        }
    }
}

/// The holder's part: take the lock, then write under it until refused.
async fn holder(spec: &str) -> ExitCode {
    let parts: Vec<&str> = spec.split(' ').collect();
    let [kind, url, bucket, name] = parts[..] else { return ExitCode::from(2) };
    let backend = if kind == "redis" { Backend::Redis } else { Backend::Nats(bucket.to_owned()) };
    let store = backend.connect(url).await;
    let Ok(Some(guard)) = LockGuard::acquire(store, name, TTL, Duration::from_secs(10)).await else {
        return ExitCode::from(3);
    };
    println!("token {}", guard.token());
    let resource = format!("{{{name}}}:resource");
    for i in 0..1500u32 {
        let value = Json::from(serde_json::json!({ "holder": "first", "token": guard.token(), "n": i }));
        match guard.fenced_put(&resource, value, PutOptions::default()).await {
            Ok(()) => println!("ok {i}"),
            Err(e) if e.kind() == ErrorKind::Conflict => {
                println!("refused {i}: {e}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                println!("error {i}: {e}");
                return ExitCode::from(4);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ExitCode::from(5)
}
