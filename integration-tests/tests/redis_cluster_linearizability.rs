//! The linearizability and bank checks (SPEC §11) on a 3-master Redis
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
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use purista_core::{
    StateStore, StoreConfig,
    testkit::{Report, Workload, bank_with, linearizable_with, unique},
};
use support_pace::Paced;
use support_redis::topology::{Cluster, cli};

/// A command fails after this long ...
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// ... and the check abandons a call as indeterminate after this long.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the master stays frozen: past the cluster's node timeout (2 s),
/// so the others mark it failed.
const FROZEN: Duration = Duration::from_secs(4);

fn workload() -> Workload {
    Workload {
        instances: 6,
        keys: 3,
        ops_per_client: 150,
        think: Duration::from_millis(10),
        op_timeout: OP_TIMEOUT,
        ..Workload::default()
    }
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

fn pid(port: u16) -> String {
    let info = cli(port, &["INFO", "server"]);
    let line = info.lines().find_map(|l| l.strip_prefix("process_id:"));
    line.expect("INFO names the process").trim().to_owned()
}

fn signal(sig: &str, pid: &str) {
    let status = Command::new("kill").args([sig, pid]).status().expect("run kill");
    assert!(status.success(), "kill {sig} {pid}");
}

/// Freezes the master `port` (process `pid`) for [`FROZEN`] while the
/// clients run, resumes it, and waits (bounded) until every node of
/// `ports` says the cluster is ok.
async fn freeze(port: u16, pid: String, ports: Vec<u16>) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    signal("-STOP", &pid);
    let frozen = Instant::now();
    tokio::time::sleep(FROZEN).await;
    signal("-CONT", &pid);
    eprintln!("master {port} frozen for {:?}", frozen.elapsed());
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in ports {
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
fn setup() -> Option<(Cluster, String, u16, String)> {
    let cluster = Cluster::start()?;
    let tag = unique("lin");
    let port = owner(&cluster, &tag);
    let pid = pid(port);
    Some((cluster, tag, port, pid))
}

fn conclude(report: &Report) {
    assert!(report.skipped.is_none(), "{report}");
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_while_a_master_is_frozen() {
    let Some((cluster, tag, port, pid)) = setup() else { return };
    let report =
        linearizable_with(&factory(cluster.url(), tag), workload(), freeze(port, pid, cluster.ports.clone()))
            .await;
    conclude(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_while_a_master_is_frozen() {
    let Some((cluster, tag, port, pid)) = setup() else { return };
    let report =
        bank_with(&factory(cluster.url(), tag), workload(), freeze(port, pid, cluster.ports.clone())).await;
    conclude(&report);
}
