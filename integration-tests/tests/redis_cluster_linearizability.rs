//! The linearizability, bank and lease checks on a 3-master Redis
//! Cluster (no replicas), every key under one `{hash tag}` so transactions
//! stay in one slot, while the master owning that slot is frozen (SIGSTOP)
//! for a few seconds and resumed. With no replica to promote the cluster
//! goes down for a while and comes back with the same master; calls that
//! fail or time out meanwhile count as possibly applied. Six store
//! instances, each its own connection.

mod support_pace;
mod support_redis;

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use integration_tests::fixtures::redis_topology::{Cluster, cli};
use purista_core::{
    StateStore, StoreConfig,
    testkit::{Report, Workload, bank_with, lease_with, linearizable_with, unique},
};
use support_pace::Paced;

/// A command fails after this long ...
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// ... and the check abandons a call as indeterminate after this long.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the master stays frozen: past the cluster's node timeout (2 s),
/// so the others mark it failed.
const FROZEN: Duration = Duration::from_secs(4);

fn workload() -> Workload {
    Workload::with_fault(6, 3, OP_TIMEOUT)
}

type StoreFuture = Pin<Box<dyn Future<Output = Option<Arc<dyn StateStore>>> + Send>>;

/// Stores on the cluster with every key prefixed by `{tag}:`.
fn factory(url: String, tag: String) -> impl Fn(StoreConfig) -> StoreFuture + Sync {
    move |mut config: StoreConfig| -> StoreFuture {
        config.key_prefix = format!("{{{tag}}}:{}", config.key_prefix);
        let builder = support_redis::builder(&url).command_timeout(COMMAND_TIMEOUT).store_config(config);
        Box::pin(async move {
            let store = builder.connect().await.expect("connect to the cluster");
            Some(Paced::wrap(Arc::new(store)))
        })
    }
}

/// The port of the master owning `{tag}`'s slot: the node that answers a
/// read of it rather than redirecting.
fn owner(cluster: &Cluster, tag: &str) -> u16 {
    let key = format!("{{{tag}}}:probe");
    let owner = cluster.ports.iter().copied().find(|&p| !cli(p, &["GET", &key]).contains("MOVED"));
    owner.expect("one master owns the slot")
}

/// Freezes the master `port` (SIGSTOP) for [`FROZEN`] while the clients
/// run, resumes it, and waits (bounded) until every node says the cluster
/// is ok.
async fn freeze(cluster: &mut Cluster, port: u16) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.node(port).pause().expect("SIGSTOP the master");
    let frozen = Instant::now();
    tokio::time::sleep(FROZEN).await;
    cluster.node(port).resume().expect("SIGCONT the master");
    eprintln!("master {port} frozen for {:?}", frozen.elapsed());
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in cluster.ports.clone() {
        loop {
            let info =
                tokio::task::spawn_blocking(move || cli(node, &["CLUSTER", "INFO"])).await.expect("cli");
            if info.contains("cluster_state:ok") {
                break;
            }
            assert!(Instant::now() < deadline, "node {node}: cluster not ok again: {info}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eprintln!("cluster ok {:?} after the freeze began", frozen.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// Starts the cluster and names the master to freeze.
async fn setup() -> Option<(Cluster, String, u16)> {
    let cluster = Cluster::start().await?;
    let tag = unique("lin");
    let port = owner(&cluster, &tag);
    Some((cluster, tag, port))
}

fn conclude(report: &Report) {
    assert!(report.skipped.is_none(), "{report}");
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_while_a_master_is_frozen() {
    let Some((mut cluster, tag, port)) = setup().await else { return };
    let factory = factory(cluster.url(), tag);
    let report = linearizable_with(&factory, workload(), freeze(&mut cluster, port)).await;
    conclude(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_while_a_master_is_frozen() {
    let Some((mut cluster, tag, port)) = setup().await else { return };
    let factory = factory(cluster.url(), tag);
    let report = bank_with(&factory, workload(), freeze(&mut cluster, port)).await;
    conclude(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_stay_fenced_while_a_master_is_frozen() {
    let Some((mut cluster, tag, port)) = setup().await else { return };
    let factory = factory(cluster.url(), tag);
    let report = lease_with(&factory, workload(), freeze(&mut cluster, port)).await;
    conclude(&report);
}
