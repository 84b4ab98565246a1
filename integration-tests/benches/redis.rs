//! `RedisStateStore` against fred doing the same GET / SET / MGET, in one run,
//! on one local server (found by the test fixtures).
//!
//! `cargo bench -p integration-tests --bench redis`

mod harness;

use std::sync::Arc;

use bytes::Bytes;
use fred::prelude::*;
use harness::Raw;
use integration_tests::fixtures;
use purista_core::{CacheOptions, CachedStore, StateStore};
use purista_redis_state_store::{CacheFeed, RedisStateStore};

struct Fred(Client);

impl Raw for Fred {
    async fn get(&self, key: &str) -> Option<Bytes> {
        self.0.get(key).await.unwrap()
    }
    async fn set(&self, key: &str, value: Bytes) {
        self.0.set::<(), _, _>(key, value, None, None, false).await.unwrap()
    }
    async fn get_many(&self, keys: &[String]) -> Vec<Option<Bytes>> {
        self.0.mget(keys.to_vec()).await.unwrap()
    }
    async fn increment(&self, key: &str) -> bool {
        self.0.incr_by::<i64, _>(key, 1).await.unwrap();
        true
    }
    /// `SET key token NX PX ttl`, then the usual compare-and-delete script.
    async fn lock_cycle(&self, key: &str) -> bool {
        let ttl = Expiration::PX(harness::LOCK_TTL.as_millis() as i64);
        let token = format!("{}-{}", std::process::id(), key.len());
        let set: Option<String> =
            self.0.set(key, token.as_str(), Some(ttl), Some(SetOptions::NX), false).await.unwrap();
        let released: i64 = self.0.eval(RELEASE, vec![key], vec![token]).await.unwrap();
        set.is_some() && released == 1
    }
}

const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

fn main() {
    let rt = harness::runtime();
    let Some(server) = rt.block_on(fixtures::redis()) else {
        eprintln!("redis bench: no Redis server, nothing measured");
        return;
    };
    let url = server.url().to_string();
    let (store, raw) = rt.block_on(async {
        let store = RedisStateStore::connect(&url).await.expect("store");
        let client = Builder::from_config(Config::from_url(&url).unwrap()).build().unwrap();
        client.init().await.expect("fred");
        (store, client)
    });
    let mut c = harness::criterion();
    cached_writes(&mut c, &rt, &url, &raw);
    harness::run(&mut c, &rt, "redis", Arc::new(store), Arc::new(Fred(raw)));
    c.final_summary();
}

/// What a near cache's feed costs the writes of its process: with
/// `CLIENT TRACKING` (the default) a `set_state` stays one `MSET`; with
/// keyspace notifications every write goes through the script that
/// publishes its value (its watchers need it). Beside fred's `SET`.
fn cached_writes(c: &mut criterion::Criterion, rt: &tokio::runtime::Runtime, url: &str, raw: &Client) {
    let cached = |feed| {
        rt.block_on(async {
            let store = RedisStateStore::builder(url).cache_feed(feed).connect().await.expect("store");
            CachedStore::new(Arc::new(store), CacheOptions::default()).await.expect("a near cache")
        })
    };
    let tracking = cached(CacheFeed::ClientTracking);
    let keyspace = cached(CacheFeed::KeyspaceNotifications);
    let value = purista_core::Json::encode(&"a session").unwrap();
    let mut g = c.benchmark_group("redis/cached_set");
    g.bench_function("client_tracking", |b| {
        b.to_async(rt).iter(|| async { tracking.set_state("bench.cached_set", value.clone()).await.unwrap() })
    });
    g.bench_function("keyspace_notifications", |b| {
        b.to_async(rt).iter(|| async { keyspace.set_state("bench.cached_set", value.clone()).await.unwrap() })
    });
    g.bench_function("raw", |b| {
        b.to_async(rt).iter(|| async {
            raw.set::<(), _, _>("bench.cached_set", value.clone().into_bytes(), None, None, false)
                .await
                .unwrap()
        })
    });
    g.finish();
    rt.block_on(async {
        let _ = tracking.destroy().await;
        let _ = keyspace.destroy().await;
    });
}
