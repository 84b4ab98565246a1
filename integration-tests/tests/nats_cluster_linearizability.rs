//! The linearizability, bank and lease checks on a 3-node JetStream
//! cluster, bucket with 3 replicas, while the bucket's stream leader is
//! killed (SIGKILL) and later started again on the same port and store
//! directory. Six store instances, each its own connection, first to a
//! different node. An operation that timed out counts as possibly applied.
//!
//! By default the store reads a replicated bucket through the stream leader
//! (`STREAM.MSG.GET`), and the check passes. With replica reads (the opt-in
//! direct gets, which any replica answers, a lagging one too) it does not:
//! that test is ignored, as the documented weaker guarantee.

mod support_nats;
mod support_pace;

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::ConnectOptions;
use integration_tests::fixtures::nats_cluster::Cluster;
use purista_core::{
    StateStore, StoreConfig,
    testkit::{Report, Workload, bank_with, lease_with, linearizable_with},
};
use purista_nats_state_store::{NatsStateStore, NatsStateStoreBuilder, Storage};
use support_nats::bucket;
use support_pace::Paced;

/// A JetStream request (and so a store call) fails after this long ...
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// ... and the check abandons a call as indeterminate after this long.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// Keys spread the calls a leader change leaves undecided (every call in
/// flight then is): with 3 keys a loaded machine left some 25 per key, more
/// than the search can place; with 8, about 10.
fn workload() -> Workload {
    Workload::with_fault(6, 8, OP_TIMEOUT)
}

/// A builder on `bucket` whose seed list starts at node `first` (kept in
/// that order), with short request timeouts; store defaults otherwise.
fn builder(urls: &[String], first: usize, bucket: &str) -> NatsStateStoreBuilder {
    let urls = urls.iter().cycle().skip(first).take(urls.len()).cloned();
    let options = ConnectOptions::new().request_timeout(Some(REQUEST_TIMEOUT)).retain_servers_order();
    NatsStateStore::builder()
        .servers(urls)
        .connect_options(options)
        .bucket(bucket)
        .replicas(3)
        .storage(Storage::File)
}

/// Kills the node leading the bucket's stream while the clients run, waits,
/// starts it again on the same port and data, and lets traffic go on.
async fn kill_and_restart_leader(cluster: &mut Cluster, bucket: &str) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Every node is up now, so asking the first is enough.
    let leader = stream_leader(&cluster.urls(), bucket).await;
    let victim = leader.as_deref().and_then(|n| n.strip_prefix('n')?.parse::<usize>().ok()).unwrap_or(1) - 1;
    cluster.nodes[victim].kill();
    let killed = Instant::now();
    eprintln!("killed n{} (stream leader {leader:?})", victim + 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.nodes[victim].restart().await.expect("restart the killed node");
    eprintln!("n{} back after {:?}", victim + 1, killed.elapsed());
    // Traffic while the restarted node catches up.
    tokio::time::sleep(Duration::from_secs(3)).await;
}

/// The server name of the bucket's stream leader, if one is known now.
async fn stream_leader(urls: &[String], bucket: &str) -> Option<String> {
    let found = async {
        let client = async_nats::connect(urls[0].as_str()).await?;
        let js = async_nats::jetstream::new(client);
        let info = js.get_stream(format!("KV_{bucket}")).await?.info().await?.clone();
        Ok::<_, async_nats::Error>(info.cluster.and_then(|c| c.leader))
    };
    found.await.unwrap_or_else(|e| {
        eprintln!("no stream leader known: {e}");
        None
    })
}

/// What the factory's calls return.
type StoreFuture = Pin<Box<dyn Future<Output = Option<Arc<dyn StateStore>>> + Send>>;

/// Starts the cluster and makes the 3-replica bucket; the factory hands out
/// instances (with replica reads if `replica_reads`) whose first seed is n1,
/// n2, n3, n1 ... in turn.
async fn setup(
    name: &str,
    replica_reads: bool,
) -> Option<(Cluster, String, impl Fn(StoreConfig) -> StoreFuture + Sync)> {
    let cluster = Cluster::start().await?;
    let urls = cluster.urls();
    let bucket = bucket(name);
    support_nats::cluster::connect(|| builder(&urls, 0, &bucket)).await;
    let next = AtomicUsize::new(0);
    let factory = {
        let bucket = bucket.clone();
        move |config: StoreConfig| -> StoreFuture {
            let node = next.fetch_add(1, Ordering::Relaxed) % urls.len();
            let builder = builder(&urls, node, &bucket).replica_reads(replica_reads).store_config(config);
            Box::pin(async move {
                let store = builder.connect().await.expect("connect to the cluster");
                Some(Paced::wrap(Arc::new(store)))
            })
        }
    };
    Some((cluster, bucket, factory))
}

/// Prints the figures and fails with the full report on a violation.
fn conclude(report: &Report) {
    assert!(report.skipped.is_none(), "{report}");
    report.assert_passed();
}

/// The store as it comes: on a replicated bucket every read goes through
/// the stream leader, which acknowledges a write only once it holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_while_the_stream_leader_is_killed_and_restarted() {
    let Some((mut cluster, bucket, factory)) = setup("lin", false).await else { return };
    let fault = kill_and_restart_leader(&mut cluster, &bucket);
    conclude(&linearizable_with(&factory, workload(), fault).await);
}

/// With replica reads (opt-in) any replica answers a read, a lagging
/// follower too: a read that starts after a write was acknowledged can still
/// return the value before it, as the option's documentation says. Seen
/// (seed 0x18eccca061125f5a, when this was the store's default):
///
/// ```text
/// client 1 [6427.596 .. 6428.443] ms update-if(1000327 -> 2000288) -> ok
/// client 0 [6428.629 .. 6429.241] ms get                           -> 1000327
/// ```
///
/// In other runs the search gives up on such a history (Undecided, after
/// 30 to 50 s of searching), which fails the check too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "documents the weaker guarantee of replica_reads(true): reads may be stale, the check fails"]
async fn not_linearizable_with_replica_reads_while_the_stream_leader_is_killed_and_restarted() {
    let Some((mut cluster, bucket, factory)) = setup("lin", true).await else { return };
    let fault = kill_and_restart_leader(&mut cluster, &bucket);
    conclude(&linearizable_with(&factory, workload(), fault).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_while_the_stream_leader_is_killed_and_restarted() {
    let Some((mut cluster, bucket, factory)) = setup("bank", false).await else { return };
    let fault = kill_and_restart_leader(&mut cluster, &bucket);
    conclude(&bank_with(&factory, workload(), fault).await);
}

/// Leases take whole-second TTLs here, so a round is slow: traffic goes on
/// for 10 s after the killed leader is back, for grants on either side of
/// the fault (a run that ended with the fault saw too few to check).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_stay_fenced_while_the_stream_leader_is_killed_and_restarted() {
    let Some((mut cluster, bucket, factory)) = setup("lease", false).await else { return };
    let fault = async {
        kill_and_restart_leader(&mut cluster, &bucket).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    };
    conclude(&lease_with(&factory, workload(), fault).await);
}
