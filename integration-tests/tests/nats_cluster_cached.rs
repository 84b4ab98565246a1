//! The near cache's rules on a 3-node JetStream cluster, bucket with 3
//! replicas: the `cache` cases, each instance its own cache over its own
//! connection, and the instances connected to different nodes first, so a
//! write reaches another instance's cache through another node; and a node
//! frozen (SIGSTOP) under an instance reading through its cache.

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
        frozen_node,
    );
    let code = testkit::main_with(testkit::cached(factory), &["cache"], vec![frozen]);
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

/// The node an instance reads through is frozen: it closes no connection,
/// and sends that instance's feed nothing. Another instance, on another
/// node, writes once the cluster has moved on; a read begun `bound` after
/// that write's acknowledgement must not answer the value cached before.
async fn frozen_node(mut cluster: Cluster) {
    let (urls, bucket) = (cluster.urls(), support_nats::bucket("frozen-node"));
    let reader = store_on(&urls, 0, &bucket, StoreConfig::default()).await;
    let cached = CachedStore::new(Arc::new(reader), CacheOptions::default()).await.expect("a near cache");
    let writer = store_on(&urls, 1, &bucket, StoreConfig::default()).await;
    let bound = cached.capabilities().stale_reads.expect("a near cache declares its bound");
    let key = unique("frozen");
    writer.set(&key, &0).await.unwrap();
    for _ in 0..2 {
        assert_eq!(cached.get::<i32>(&key).await.unwrap(), Some(0));
    }
    cluster.nodes[0].pause().expect("SIGSTOP n1");
    let frozen = Instant::now();
    // The bucket's leader may have been n1: the write waits for a new one.
    while let Err(e) = writer.set(&key, &1).await {
        assert!(frozen.elapsed() < PATIENCE, "the writer never wrote with n1 frozen: {e:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let acknowledged = Instant::now();
    let written = frozen.elapsed();
    // Through a frozen node the reader may read nothing at all; it must not
    // read the old value from its cache.
    let while_frozen = Duration::from_secs(12);
    let (during, stale) =
        testkit::reads_after_a_write(&*cached, &key, (&0, &1), acknowledged, bound, while_frozen).await;
    cluster.nodes[0].resume().expect("SIGCONT n1");
    let (after, stale_after) =
        testkit::reads_after_a_write(&*cached, &key, (&0, &1), acknowledged, bound, PATIENCE).await;
    eprintln!(
        "[nats_cluster_cached] written {written:?} after the freeze; read through the cache {during:?} after its \
         acknowledgement while n1 was frozen, {after:?} once it went on; metrics {:?}",
        cached.metrics()
    );
    assert_eq!(
        stale + stale_after,
        0,
        "reads begun {bound:?} after the acknowledgement answered the old value"
    );
    assert!(after.is_some(), "the write never reached the reader; {:?}", cached.metrics());
}
