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
    let killed = own_topology_trial(
        "a killed node leaves none of its values in a cache past the bound",
        Cluster::start,
        |cluster| node_fails(cluster, Fault::Kill),
    );
    // Nothing breaks for the reader, and nothing arrives: before its watch
    // compared what it delivered with what the stream's leader had, it
    // noticed only after async-nats's two missed heartbeats (10 s).
    let host_killed = own_topology_trial(
        "a killed node that hosted the watch's consumer, the reader on another, leaves none of its values \
         in a cache past the bound",
        Cluster::start,
        |cluster| node_fails(cluster, Fault::KillWatchHost),
    );
    let trials = vec![frozen, killed, host_killed];
    let code = testkit::main_with(testkit::cached(factory), &["cache"], trials);
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

/// What fails under an instance reading through its cache.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// SIGSTOP of the reader's node: it closes no connection and sends
    /// nothing.
    Freeze,
    /// SIGKILL of the reader's node: the connection breaks; the client
    /// moves to another node.
    Kill,
    /// SIGKILL of the node hosting the reader's watch consumer (an
    /// ephemeral consumer has one replica), the reader being connected to
    /// another node.
    KillWatchHost,
}

/// Caches placed until one's watch consumer is off the reader's node `n1`.
const PLACEMENTS: usize = 20;

/// A node fails (`fault`) under an instance reading through its cache, and
/// another instance, on another node, writes once the cluster has moved on.
/// A read begun `bound` after that write's acknowledgement must not answer
/// the value cached before; the node comes back, and the write is read.
async fn node_fails(mut cluster: Cluster, fault: Fault) {
    let (urls, bucket) = (cluster.urls(), support_nats::bucket("failed-node"));
    let writer = store_on(&urls, 1, &bucket, StoreConfig::default()).await;
    let key = unique("failed-node");
    writer.set(&key, &0).await.unwrap();
    let (cached, victim) = reader(&urls, &bucket, &key, fault).await;
    let bound = cached.capabilities().stale_reads.expect("a near cache declares its bound");
    let name = format!("n{}", victim + 1);
    match fault {
        Fault::Freeze => cluster.nodes[victim].pause().expect("SIGSTOP"),
        Fault::Kill | Fault::KillWatchHost => cluster.nodes[victim].kill(),
    }
    let failed = Instant::now();
    // The bucket's leader may have been there: the write waits for a new one.
    while let Err(e) = writer.set(&key, &1).await {
        assert!(failed.elapsed() < PATIENCE, "the writer never wrote with {name} down ({fault:?}): {e:#}");
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
        Fault::Freeze => cluster.nodes[victim].resume().expect("SIGCONT"),
        Fault::Kill | Fault::KillWatchHost => cluster.nodes[victim].start().await.expect("start again"),
    }
    let (after, stale_after) =
        testkit::reads_after_a_write(&*cached, &key, (&0, &1), acknowledged, bound, PATIENCE).await;
    eprintln!(
        "[nats_cluster_cached] {fault:?} of {name}: written {written:?} after it failed; read through the \
         cache {during:?} after its acknowledgement while it was down, {after:?} at the latest once it was \
         back; metrics {:?}",
        cached.metrics()
    );
    assert_eq!(
        stale + stale_after,
        0,
        "reads begun {bound:?} after the acknowledgement answered the old value"
    );
    assert!(after.is_some(), "the write never reached the reader; {:?}", cached.metrics());
}

/// The reader, connected to `n1`, its cache holding `key` (0), and the
/// index of the node `fault` strikes: `n1`, or the node hosting the
/// cache's watch consumer once one is placed elsewhere.
async fn reader(urls: &[String], bucket: &str, key: &str, fault: Fault) -> (Arc<CachedStore>, usize) {
    let store = Arc::new(store_on(urls, 0, bucket, StoreConfig::default()).await);
    let mut earlier = Vec::new();
    for _ in 0..PLACEMENTS {
        let cached = CachedStore::new(store.clone(), CacheOptions::default()).await.expect("a near cache");
        for _ in 0..2 {
            assert_eq!(cached.get::<i32>(key).await.unwrap(), Some(0));
        }
        if fault != Fault::KillWatchHost {
            return (cached, 0);
        }
        let mut new = watch_consumers(&urls[1], bucket).await;
        new.retain(|(name, _)| !earlier.contains(name));
        match new.as_slice() {
            [(_, host)] if host != "n1" && !host.is_empty() => {
                let host: usize = host.trim_start_matches('n').parse().expect("a node name n1-n3");
                return (cached, host - 1);
            }
            // On the reader's node, or not told apart (the feed may have
            // subscribed again): this cache is dropped, its watch goes (the
            // server keeps the consumer a while), and another is placed.
            _ => earlier.extend(new.into_iter().map(|(name, _)| name)),
        }
    }
    panic!("none of {PLACEMENTS} watch consumers was placed alone off the reader's node")
}

/// The watch consumers on `bucket` (the near caches' feeds): each one's
/// name and the name of the server hosting it.
async fn watch_consumers(url: &str, bucket: &str) -> Vec<(String, String)> {
    use futures_util::StreamExt;
    let js = async_nats::jetstream::new(async_nats::connect(url).await.expect("a raw client"));
    let stream = js.get_stream(format!("KV_{bucket}")).await.expect("the bucket's stream");
    let mut consumers = stream.consumers();
    let mut found = Vec::new();
    while let Some(info) = consumers.next().await {
        let info = info.expect("a consumer's info");
        if info.config.description.as_deref() == Some("purista state store") {
            found.push((info.name, info.cluster.and_then(|c| c.leader).unwrap_or_default()));
        }
    }
    found
}
