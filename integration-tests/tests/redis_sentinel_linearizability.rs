//! The linearizability and bank checks on Redis behind Sentinel
//! (master, replica, one sentinel) with a `SENTINEL FAILOVER` in the middle.
//! The store's default behind Sentinel waits for one replica per write
//! (`WAIT 1`, 500 ms), so an acknowledged write is on the replica that gets
//! promoted; a write whose `WAIT` fell short fails, and like any call that
//! failed with `Unavailable`/`Timeout` or ran out of time it counts as
//! possibly applied. Six store instances, each its own connection.

mod support_pace;
mod support_redis;

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use integration_tests::fixtures::redis_topology::{SERVICE, Sentinel, cli};
use purista_core::{
    StateStore, StoreConfig,
    testkit::{Report, Workload, bank_with, linearizable_with},
};
use support_pace::Paced;

/// A command fails after this long ...
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// ... and the check abandons a call as indeterminate after this long.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

fn workload() -> Workload {
    Workload::with_fault(6, 3, OP_TIMEOUT)
}

type StoreFuture = Pin<Box<dyn Future<Output = Option<Arc<dyn StateStore>>> + Send>>;

/// Stores through the sentinel, with the default wait for one replica.
fn factory(url: String) -> impl Fn(StoreConfig) -> StoreFuture + Sync {
    move |config: StoreConfig| -> StoreFuture {
        let builder = support_redis::builder(&url).command_timeout(COMMAND_TIMEOUT).store_config(config);
        Box::pin(async move {
            let store = builder.connect().await.expect("connect through sentinel");
            Some(Paced::wrap(Arc::new(store)))
        })
    }
}

/// `redis-cli` off the runtime's threads.
async fn cli_async(port: u16, args: &'static [&'static str]) -> String {
    tokio::task::spawn_blocking(move || cli(port, args)).await.expect("redis-cli")
}

/// Waits (bounded) until `port`'s `INFO replication` contains `what`.
async fn until_replication(port: u16, what: &str, deadline: Instant) {
    while !cli_async(port, &["INFO", "replication"]).await.contains(what) {
        assert!(Instant::now() < deadline, "{port} never reported {what:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `SENTINEL FAILOVER` while the clients run; returns once the replica is
/// master, the old master its replica in sync, and traffic went on a little.
async fn failover(master: u16, replica: u16, sentinel: u16) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let out = cli_async(sentinel, &["SENTINEL", "FAILOVER", SERVICE]).await;
    assert!(out.contains("OK"), "SENTINEL FAILOVER: {out}");
    let deadline = started + Duration::from_secs(60);
    loop {
        let out = cli_async(sentinel, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE]).await;
        if out.lines().nth(1).and_then(|p| p.trim().parse::<u16>().ok()) == Some(replica) {
            break;
        }
        assert!(Instant::now() < deadline, "failover did not complete");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let switched = started.elapsed();
    // Sentinel demotes the old master within its 10 s INFO period.
    until_replication(master, "role:slave", deadline).await;
    until_replication(replica, "state=online", deadline).await;
    eprintln!("failover: switch after {switched:?}, old master in sync after {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
}

fn conclude(report: &Report) {
    assert!(report.skipped.is_none(), "{report}");
    report.assert_passed();
}

/// Fails: `WAIT 1` keeps acknowledged writes, but a write whose `WAIT` fell
/// short is still applied on the old master and visible there (to reads and
/// to conditional writes, whose conflicts observe it) until the demoted old
/// master resyncs from the new one and drops it. Redis's own words: `WAIT`
/// "does not make Redis a strongly consistent store". Seen in 5 runs of 5;
/// the shortest window (seed 0x18ecf558c8018936):
///
/// ```text
/// client 4 [1242.473 .. 2029.990] ms upsert(5000094) -> unknown
/// client 2 [2044.203 .. 2044.526] ms get             -> 5000094
/// client 5 [2589.594 .. 2589.967] ms get             -> 2000103 (written before)
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known defect: unacknowledged writes on the old master are observed, then lost at failover"]
async fn linearizable_through_a_sentinel_failover() {
    let Some(s) = Sentinel::start().await else { return };
    let fault = failover(s.master, s.replica, s.sentinel);
    conclude(&linearizable_with(&factory(s.url()), workload(), fault).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_through_a_sentinel_failover() {
    let Some(s) = Sentinel::start().await else { return };
    let fault = failover(s.master, s.replica, s.sentinel);
    conclude(&bank_with(&factory(s.url()), workload(), fault).await);
}
