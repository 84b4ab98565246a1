//! The near cache on a real 3-master Redis Cluster: the `cache` cases with
//! keys spread over every master (no hash tag), a check that a write on
//! each master reaches another instance's cache through that master's feed,
//! and a master restarted (losing its keys) under a reading instance.

mod support_redis;

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use integration_tests::fixtures::{
    own_topology_trial,
    redis_topology::{Cluster, cli},
};
use purista_core::{
    StateStore, StateStoreExt,
    testkit::{self, Trial, unique},
};
use purista_redis_state_store::fred::util::redis_keyslot;

fn main() -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let cluster = runtime.block_on(Cluster::start());
    let url = cluster.as_ref().map(Cluster::url);
    let keys = cluster.as_ref().map(key_per_master).unwrap_or_default();
    let every_master = {
        let url = url.clone();
        Trial::test("a write on every master reaches the cache", move || {
            let Some(url) = url else { return Err("no Redis Cluster (see the message above)".into()) };
            runtime.block_on(every_master_invalidates(&url, &keys));
            Ok(())
        })
    };
    let restarted = own_topology_trial(
        "a restarted master's lost values are not served once the loss is reported",
        Cluster::start,
        restarted_master,
    );
    let factory = testkit::cached(support_redis::factory(url, None));
    let code = testkit::main_with(factory, &["cache"], vec![every_master, restarted]);
    drop(cluster);
    code
}

/// For each master, its port and a fresh key it serves.
fn key_per_master(cluster: &Cluster) -> Vec<(u16, String)> {
    let asked = cluster.ports[0];
    let mut keys = Vec::new();
    for &port in &cluster.ports {
        let key = (0..10_000)
            .map(|_| unique("every-master"))
            .find(|key| cluster.owner_of(redis_keyslot(key.as_bytes()), asked) == Some(port))
            .unwrap_or_else(|| panic!("no key served by the master on {port}"));
        keys.push((port, key));
    }
    keys
}

/// An instance caches each key; another instance (no cache) writes it,
/// then removes it; the first reads each change within the declared bound,
/// so every master's feed reached its cache.
async fn every_master_invalidates(url: &str, keys: &[(u16, String)]) {
    let cached = support_redis::cached(url).await;
    let writer = support_redis::builder(url).connect().await.expect("a second instance");
    let bound = cached.capabilities().stale_reads.expect("a near cache declares its bound");
    for (port, key) in keys {
        writer.set(key, &0).await.unwrap();
        assert_eq!(cli(*port, &["EXISTS", key]).trim(), "1", "{key} is stored as itself on {port}");
        let hits = cached.metrics().hits;
        for _ in 0..2 {
            assert_eq!(cached.get::<i32>(key).await.unwrap(), Some(0));
        }
        assert!(cached.metrics().hits > hits, "the second read of {key} is a hit");
        writer.set(key, &1).await.unwrap();
        testkit::read_within(&*cached, key, Some(1), bound).await;
        writer.remove_state(key).await.unwrap();
        testkit::read_within::<i32>(&*cached, key, None, bound).await;
        eprintln!("the master on {port}: both changes of {key} reached the cache");
    }
}

/// How long the restart, its report and the cluster's recovery may take.
const PATIENCE: Duration = Duration::from_secs(60);

/// A master restarts without persistence: its keys are gone. Once the
/// reading instance's feed reported the lost connection, no read may answer
/// a value from before the restart; once the master is back, another
/// instance's write reaches the cache within the bound.
async fn restarted_master(mut cluster: Cluster) {
    let url = cluster.url();
    let cached = support_redis::cached(&url).await;
    let writer = support_redis::builder(&url).connect().await.expect("a second instance");
    let bound = cached.capabilities().stale_reads.expect("a near cache declares its bound");
    let (port, key) = key_per_master(&cluster).swap_remove(1);
    writer.set(&key, &"before").await.unwrap();
    for _ in 0..2 {
        assert_eq!(cached.get::<String>(&key).await.unwrap().as_deref(), Some("before"));
    }
    let resets = cached.metrics().resets;
    let report = {
        let cached = cached.clone();
        tokio::spawn(async move {
            while cached.metrics().resets == resets {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let began = Instant::now();
    cluster.node(port).restart().await.expect("restart the master");
    let restarted = began.elapsed();
    tokio::time::timeout(PATIENCE, report).await.expect("the feed reports the restart").unwrap();
    let reported = began.elapsed();
    // From the report on, the value the restart lost is never answered.
    let mut lost_served = 0;
    let settled = Instant::now();
    while settled.elapsed() < Duration::from_secs(2) {
        if matches!(cached.get::<String>(&key).await, Ok(Some(v)) if v == "before") {
            lost_served += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    while let Err(e) = writer.set(&key, &"after").await {
        assert!(began.elapsed() < PATIENCE, "the writer never wrote after the restart: {e:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let acknowledged = Instant::now();
    let (read, stale) = testkit::reads_after_a_write(
        &*cached,
        &key,
        (&"before".to_owned(), &"after".to_owned()),
        acknowledged,
        bound,
        PATIENCE,
    )
    .await;
    eprintln!(
        "[redis_cluster_cached] the master on {port} restarted in {restarted:?}, the feed reported it after \
         {reported:?}; a write after it read {read:?} after its acknowledgement; {:?}",
        cached.metrics()
    );
    assert_eq!(lost_served, 0, "a value the restart lost was served after the report");
    assert_eq!(stale, 0, "reads begun {bound:?} after the write answered the lost value");
    assert!(read.is_some(), "the write after the restart never reached the cache");
}
