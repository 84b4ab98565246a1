//! The concurrency checks of `purista_core::testkit` against a dedicated
//! server that is paused, resumed, restarted and killed while the clients
//! run: the history must stay linearizable per key (an operation that timed
//! out may or may not have taken effect), the bank must keep its total, a
//! counter must count every acknowledged increment once, and leases must
//! stay fenced (tokens grow, no overlap, no stale write lands).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use integration_tests::fixtures::{Kind, Options, Server};
use purista_core::{
    StateStore, StoreConfig,
    testkit::{self, Mix, Report, Workload, unique},
};
use purista_nats_state_store::{NatsStateStore, Storage, async_nats::ConnectOptions};
use purista_redis_state_store::RedisStateStore;

/// What a factory's closures return.
type StoreFuture = Pin<Box<dyn Future<Output = Option<Arc<dyn StateStore>>> + Send>>;

/// How long the store waits for the server before giving up on a call:
/// short, so that calls to a frozen server become indeterminate quickly.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);

/// Longer than any call to a healthy server takes, shorter than the pause:
/// every client is in a call during the pause (it pauses at most 10 ms
/// between calls), and that call cannot be answered before the server
/// resumes, so it is given up as indeterminate whatever the store's own
/// timeouts do (async-nats waits longer for a publish ack than for a
/// request, so a write may wait out a short pause and succeed).
const OP_TIMEOUT: Duration = Duration::from_millis(1500);
const PAUSE: Duration = Duration::from_millis(2500);

/// Four clients, three keys; they run at least 150 operations each, and on
/// while the fault runs.
fn workload() -> Workload {
    Workload::with_fault(4, 3, OP_TIMEOUT)
}

/// Traffic first; then the server frozen for 2.5 s, a clean restart, and a
/// kill (the dedicated servers keep every acknowledged write across both).
async fn faults(server: &mut Server) {
    let step = |what: &str| eprintln!("[fault] {what}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    step("pause");
    server.pause().await.expect("pause");
    tokio::time::sleep(PAUSE).await;
    server.resume().await.expect("resume");
    step("resumed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    step("restart");
    server.restart().await.expect("restart");
    step("restarted");
    tokio::time::sleep(Duration::from_secs(1)).await;
    step("kill");
    server.kill().await.expect("kill");
    server.start().await.expect("start after the kill");
    step("started");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Four instances with four clients each: increments of one instance
/// meet and go to the server combined, into the frozen server too.
fn counter_workload() -> Workload {
    Workload { clients_per_instance: 4, ..workload() }
}

/// Eight clients on one lease.
fn soak_workload() -> Workload {
    Workload::with_fault(8, 1, OP_TIMEOUT)
}

/// [`faults`] again and again, for a minute (some eight rounds).
async fn a_minute_of_faults(server: &mut Server) {
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        faults(server).await;
    }
}

/// The fault met traffic: calls ran into the frozen server (see [`OP_TIMEOUT`]).
#[track_caller]
fn faulted(report: &Report) {
    assert!(report.skipped.is_none(), "{report}");
    assert!(report.indeterminate > 0, "no call met the fault: {report}");
}

fn redis(url: &str) -> impl Fn(StoreConfig) -> StoreFuture + Sync + use<> {
    let url = url.to_owned();
    move |config| {
        let url = url.clone();
        Box::pin(async move {
            let store = RedisStateStore::builder(&url)
                .command_timeout(REQUEST_TIMEOUT)
                .store_config(config)
                .connect()
                .await
                .expect("connect to the dedicated redis");
            Some(Arc::new(store) as Arc<dyn StateStore>)
        })
    }
}

fn nats(url: &str) -> impl Fn(StoreConfig) -> StoreFuture + Sync + use<> {
    let (url, bucket) = (url.to_owned(), unique("lin").replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
    move |config| {
        let (url, bucket) = (url.clone(), bucket.clone());
        Box::pin(async move {
            let store = NatsStateStore::builder()
                .server(url)
                .connect_options(ConnectOptions::new().request_timeout(Some(REQUEST_TIMEOUT)))
                .bucket(bucket)
                .storage(Storage::File)
                .store_config(config)
                .connect()
                .await
                .expect("connect to the dedicated NATS");
            Some(Arc::new(store) as Arc<dyn StateStore>)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_is_linearizable_through_pause_restart_and_kill() {
    let Some(mut server) = Server::start_dedicated(Kind::Redis, Options { persistence: true }).await else {
        return;
    };
    let factory = redis(server.url());
    let report = testkit::linearizable_with(&factory, workload(), faults(&mut server)).await;
    report.assert_passed();
    faulted(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_bank_keeps_its_total_through_pause_restart_and_kill() {
    let Some(mut server) = Server::start_dedicated(Kind::Redis, Options { persistence: true }).await else {
        return;
    };
    let factory = redis(server.url());
    let report = testkit::bank_with(&factory, workload(), faults(&mut server)).await;
    report.assert_passed();
    faulted(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_counts_every_acknowledged_increment_through_pause_restart_and_kill() {
    let Some(mut server) = Server::start_dedicated(Kind::Redis, Options { persistence: true }).await else {
        return;
    };
    let factory = redis(server.url());
    let report = testkit::counter_with(&factory, counter_workload(), faults(&mut server)).await;
    report.assert_passed();
    faulted(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_counts_every_acknowledged_increment_through_pause_restart_and_kill() {
    let Some(mut server) = Server::start_dedicated(Kind::Nats, Options { persistence: true }).await else {
        return;
    };
    let factory = nats(server.url());
    let report = testkit::counter_with(&factory, counter_workload(), faults(&mut server)).await;
    report.assert_passed();
    faulted(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_is_linearizable_through_pause_restart_and_kill() {
    let Some(mut server) = Server::start_dedicated(Kind::Nats, Options { persistence: true }).await else {
        return;
    };
    let factory = nats(server.url());
    let report = testkit::linearizable_with(&factory, workload(), faults(&mut server)).await;
    report.assert_passed();
    faulted(&report);
}

/// Regression (found by this check): on NATS, a create-only write that
/// found a delete marker retried once against that marker's revision; a
/// remove landing in between (a transaction's remove writes a marker even
/// over an absent key) added another marker, and the create failed with
/// `Conflict` although the key was absent throughout. Shortest window seen:
/// `get -> absent`, `remove -> ok`, `get -> absent` around a
/// `create(...) -> conflict`, with no write between. Many creates and
/// removes on two keys, without a fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_create_racing_a_remove_is_linearizable() {
    let Some(server) = Server::start_dedicated(Kind::Nats, Options::default()).await else {
        return;
    };
    let mix = Mix { get: 2, get_state: 0, upsert: 1, create: 3, update: 0, remove: 3, remove_if: 0 };
    let workload = Workload { instances: 6, keys: 2, ops_per_client: 200, mix, ..Workload::default() };
    testkit::linearizable_with(&nats(server.url()), workload, async {}).await.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_bank_keeps_its_total_through_pause_restart_and_kill() {
    let Some(mut server) = Server::start_dedicated(Kind::Nats, Options { persistence: true }).await else {
        return;
    };
    let factory = nats(server.url());
    let report = testkit::bank_with(&factory, workload(), faults(&mut server)).await;
    report.assert_passed();
    faulted(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_leases_stay_fenced_through_pause_restart_and_kill() {
    let Some(mut server) = Server::start_dedicated(Kind::Redis, Options { persistence: true }).await else {
        return;
    };
    let factory = redis(server.url());
    let report = testkit::lease_with(&factory, workload(), faults(&mut server)).await;
    report.assert_passed();
    faulted(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_leases_stay_fenced_through_pause_restart_and_kill() {
    let Some(mut server) = Server::start_dedicated(Kind::Nats, Options { persistence: true }).await else {
        return;
    };
    let factory = nats(server.url());
    let report = testkit::lease_with(&factory, workload(), faults(&mut server)).await;
    report.assert_passed();
    faulted(&report);
}

/// The soak: eight instances contend for one lease for a minute while the
/// server is frozen past the TTL, restarted and killed, over and over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_leases_stay_fenced_through_a_minute_of_faults() {
    let Some(mut server) = Server::start_dedicated(Kind::Redis, Options { persistence: true }).await else {
        return;
    };
    let factory = redis(server.url());
    let report = testkit::lease_with(&factory, soak_workload(), a_minute_of_faults(&mut server)).await;
    report.assert_passed();
    faulted(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_leases_stay_fenced_through_a_minute_of_faults() {
    let Some(mut server) = Server::start_dedicated(Kind::Nats, Options { persistence: true }).await else {
        return;
    };
    let factory = nats(server.url());
    let report = testkit::lease_with(&factory, soak_workload(), a_minute_of_faults(&mut server)).await;
    report.assert_passed();
    faulted(&report);
}

/// 8 instances × 1,000 increments of one counter, natively (no fault).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_counts_8_instances_by_1000_increments() {
    let Some(server) = Server::start_dedicated(Kind::Redis, Options::default()).await else {
        return;
    };
    let workload = Workload { instances: 8, ops_per_client: 1000, ..Workload::default() };
    let report = testkit::counter_with(&redis(server.url()), workload, async {}).await;
    report.assert_passed();
    assert_eq!(report.ops, 8000, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rate_limits_hold_through_pause_restart_and_kill() {
    let Some(mut server) = Server::start_dedicated(Kind::Redis, Options { persistence: true }).await else {
        return;
    };
    let factory = redis(server.url());
    let report = testkit::rate_limit_with(&factory, workload(), faults(&mut server)).await;
    report.assert_passed();
    faulted(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_rate_limits_hold_through_pause_restart_and_kill() {
    let Some(mut server) = Server::start_dedicated(Kind::Nats, Options { persistence: true }).await else {
        return;
    };
    let factory = nats(server.url());
    let report = testkit::rate_limit_with(&factory, workload(), faults(&mut server)).await;
    report.assert_passed();
    faulted(&report);
}
