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

/// What a near cache's feed costs the writes of its process, 64 tasks
/// writing at once: with `CLIENT TRACKING` (the default) a `set_state` stays
/// one `MSET`; with keyspace notifications every write goes through the
/// script that publishes its value (watchers need it). Beside fred's `SET`.
/// The tracking side runs first: a pattern subscription anywhere on the
/// server (the other side's) makes every store publish.
fn cached_writes(c: &mut criterion::Criterion, rt: &tokio::runtime::Runtime, url: &str, raw: &Client) {
    let cached = |feed| {
        rt.block_on(async {
            let store = RedisStateStore::builder(url).cache_feed(feed).connect().await.expect("store");
            CachedStore::new(Arc::new(store), CacheOptions::default()).await.expect("a near cache")
        })
    };
    let value = purista_core::Json::encode(&"a session").unwrap();
    let tasks = harness::TASKS;
    let mut g = c.benchmark_group(format!("redis/cached_set_{tasks}_tasks"));
    g.throughput(criterion::Throughput::Elements((tasks * harness::CAS_EACH) as u64));
    let write = |store: Arc<CachedStore>| {
        let value = value.clone();
        move |b: &mut criterion::Bencher| {
            b.to_async(rt).iter(|| {
                let value = value.clone();
                harness::in_tasks(tasks, store.clone(), "bench.cached_set".to_owned(), move |s, k| {
                    let value = value.clone();
                    async move { s.set_state(&k, value).await.unwrap() }
                })
            })
        }
    };
    let tracking = cached(CacheFeed::ClientTracking);
    g.bench_function("client_tracking", write(tracking.clone()));
    rt.block_on(tracking.destroy()).unwrap();
    let fred = Arc::new(raw.clone());
    g.bench_function("raw", |b| {
        b.to_async(rt).iter(|| {
            let value = value.clone();
            harness::in_tasks(tasks, fred.clone(), "bench.cached_set".to_owned(), move |r, k| {
                let value = value.clone().into_bytes();
                async move { r.set::<(), _, _>(k, value, None, None, false).await.unwrap() }
            })
        })
    });
    let keyspace = cached(CacheFeed::KeyspaceNotifications);
    g.bench_function("keyspace_notifications", write(keyspace.clone()));
    rt.block_on(keyspace.destroy()).unwrap();
    g.finish();
}
