//! The near cache's rules on a 3-node JetStream cluster, bucket with 3
//! replicas: the `cache` cases, each instance its own cache over its own
//! connection, and the instances connected to different nodes first, so a
//! write reaches another instance's cache through another node; and a node
//! frozen (SIGSTOP) or killed under an instance reading through its cache.

mod support_nats;

use std::{
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::ConnectOptions;
use integration_tests::fixtures::{nats_cluster::Cluster, own_topology_trial};
use purista_core::{
    CacheOptions, CachedStore, StateStore, StateStoreExt, StoreConfig,
    testkit::{self, unique},
};
use purista_nats_state_store::{NatsStateStore, Storage};

/// How long a failover, a write and the reconnections may take.
const PATIENCE: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let cluster = tokio::runtime::Runtime::new().expect("runtime").block_on(Cluster::start());
    let urls = cluster.as_ref().map(Cluster::urls);
    let bucket = support_nats::bucket("cached");
    let next = Arc::new(AtomicUsize::new(0));
    let factory = move |config: StoreConfig| {
        let (urls, bucket, first) = (urls.clone(), bucket.clone(), next.fetch_add(1, Ordering::Relaxed));
        async move { Some(Arc::new(store_on(&urls?, first, &bucket, config).await) as Arc<dyn StateStore>) }
    };
    let frozen = own_topology_trial(
        "a frozen node leaves none of its values in a cache past the bound",
        Cluster::start,
        |cluster| node_fails(cluster, Fault::Freeze),
    );
    // Known defect, shown ignored (run it with `--include-ignored`): when the
    // killed node hosted the reader's watch consumer but not the reader's
    // connection, nothing answers for the consumer and nothing breaks, and
    // the watch reports it only after async-nats's two missed heartbeats
    // (10 s). Two fresh-clone CI runs in two caught it (about 1,300 stale
    // reads past the bound); a probe of the consumer's info did not help.
    let killed = own_topology_trial(
        "a killed node leaves none of its values in a cache past the bound",
        Cluster::start,
        |cluster| node_fails(cluster, Fault::Kill),
    )
    .with_ignored_flag(true);
    let code = testkit::main_with(testkit::cached(factory), &["cache"], vec![frozen, killed]);
    drop(cluster);
    code
}

/// A store on the bucket (3 replicas, file storage), connected to node
/// `first` (modulo 3) first.
async fn store_on(urls: &[String], first: usize, bucket: &str, config: StoreConfig) -> NatsStateStore {
    let seeds: Vec<String> = urls.iter().cycle().skip(first % urls.len()).take(urls.len()).cloned().collect();
    let builder = || {
        NatsStateStore::builder()
            .servers(seeds.clone())
            .connect_options(ConnectOptions::new().retain_servers_order())
            .bucket(bucket)
            .replicas(3)
            .storage(Storage::File)
            .store_config(config.clone())
    };
    support_nats::cluster::connect(builder).await
}

/// What happens to the node the reading instance is connected to.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGSTOP: it closes no connection and sends nothing.
    Freeze,
    /// SIGKILL: the connection breaks; the client moves to another node.
    Kill,
}

/// The node an instance reads through fails (`fault`), and another
/// instance, on another node, writes once the cluster has moved on. A read
/// begun `bound` after that write's acknowledgement must not answer the
/// value cached before; the node comes back, and the write is read.
async fn node_fails(mut cluster: Cluster, fault: Fault) {
    let (urls, bucket) = (cluster.urls(), support_nats::bucket("failed-node"));
    let reader = store_on(&urls, 0, &bucket, StoreConfig::default()).await;
    let cached = CachedStore::new(Arc::new(reader), CacheOptions::default()).await.expect("a near cache");
    let writer = store_on(&urls, 1, &bucket, StoreConfig::default()).await;
    let bound = cached.capabilities().stale_reads.expect("a near cache declares its bound");
    let key = unique("failed-node");
    writer.set(&key, &0).await.unwrap();
    for _ in 0..2 {
        assert_eq!(cached.get::<i32>(&key).await.unwrap(), Some(0));
    }
    match fault {
        Fault::Freeze => cluster.nodes[0].pause().expect("SIGSTOP n1"),
        Fault::Kill => cluster.nodes[0].kill(),
    }
    let failed = Instant::now();
    // The bucket's leader may have been n1: the write waits for a new one.
    while let Err(e) = writer.set(&key, &1).await {
        assert!(failed.elapsed() < PATIENCE, "the writer never wrote with n1 down ({fault:?}): {e:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let acknowledged = Instant::now();
    let written = failed.elapsed();
    // Through a frozen node the reader may read nothing at all; it must not
    // read the old value from its cache.
    let meanwhile = Duration::from_secs(12);
    let (during, stale) =
        testkit::reads_after_a_write(&*cached, &key, (&0, &1), acknowledged, bound, meanwhile).await;
    match fault {
        Fault::Freeze => cluster.nodes[0].resume().expect("SIGCONT n1"),
        Fault::Kill => cluster.nodes[0].start().await.expect("start n1 again"),
    }
    let (after, stale_after) =
        testkit::reads_after_a_write(&*cached, &key, (&0, &1), acknowledged, bound, PATIENCE).await;
    eprintln!(
        "[nats_cluster_cached] {fault:?}: written {written:?} after n1 failed; read through the cache {during:?} \
         after its acknowledgement while n1 was down, {after:?} at the latest once it was back; metrics {:?}",
        cached.metrics()
    );
    assert_eq!(
        stale + stale_after,
        0,
        "reads begun {bound:?} after the acknowledgement answered the old value"
    );
    assert!(after.is_some(), "the write never reached the reader; {:?}", cached.metrics());
}
