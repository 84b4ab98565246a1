//! The near cache on a real 3-master Redis Cluster: the `cache` cases with
//! keys spread over every master (no hash tag), and a check that a write on
//! each master reaches another instance's cache through that master's feed.

mod support_redis;

use std::process::ExitCode;

use integration_tests::fixtures::redis_topology::{Cluster, cli};
use purista_core::{
    CacheOptions, CachedStore, StateStore, StateStoreExt, StoreConfig,
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
    let factory = testkit::cached(support_redis::factory(url, None));
    let code = testkit::main_with(factory, &["cache"], vec![every_master]);
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
    let connect = || support_redis::factory(Some(url.to_owned()), None)(StoreConfig::default());
    let cached = CachedStore::new(connect().await.expect("a store"), CacheOptions::default())
        .await
        .expect("a near cache");
    let writer = connect().await.expect("a second instance");
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
