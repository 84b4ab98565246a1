//! The near cache over a real server: a hit beside the raw client's read of
//! the same key, and a Zipf(1.0) read-mostly workload (95 % reads through
//! the cache, 5 % writes by another instance, which reach the cache through
//! the server's change feed) on a warm cache, against the same workload
//! uncached.

use std::{hint::black_box, sync::Arc};

use criterion::{Criterion, Throughput};
use purista_core::{CacheOptions, CachedStore, StateStore, StateStoreExt};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use rand_distr::{Distribution, Zipf};
use tokio::runtime::Runtime;

use super::Raw;

/// Keys of the Zipf workload in a measured run; a test run (`cargo test
/// --benches`, each bench once) fills fewer.
const ZIPF_KEYS: u64 = 100_000;
const ZIPF_KEYS_IN_TESTS: u64 = 1_000;
/// Operations per measured iteration of the workload.
const ZIPF_OPS: u64 = 100;

pub fn run<R: Raw>(
    c: &mut Criterion,
    rt: &Runtime,
    backend: &str,
    store: &Arc<dyn StateStore>,
    raw: &Arc<R>,
    prefix: &str,
) {
    let cached = rt.block_on(CachedStore::new(store.clone(), CacheOptions::default())).expect("a near cache");
    let key = format!("{prefix}.cached");
    rt.block_on(store.set(&key, &"a session")).unwrap();
    let mut g = c.benchmark_group(format!("{backend}/near_cache_get"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("cached_hit", |b| {
        b.to_async(rt).iter(|| async { black_box(cached.get_value(&key).await.unwrap()) })
    });
    g.bench_function("store", |b| {
        b.to_async(rt).iter(|| async { black_box(store.get_value(&key).await.unwrap()) })
    });
    g.bench_function("raw", |b| b.to_async(rt).iter(|| async { black_box(raw.get(&key).await) }));
    g.finish();

    let measuring = std::env::args().any(|a| a == "--bench");
    let n = if measuring { ZIPF_KEYS } else { ZIPF_KEYS_IN_TESTS };
    let keys: Arc<Vec<String>> = Arc::new((0..n).map(|i| format!("{prefix}.zipf.{i}")).collect());
    rt.block_on(each(&keys, store.clone(), |s, key, k| async move { s.set(&key, &k).await.unwrap() }));
    // The feed reports the fill's writes: let it drain (a backlog the
    // feed fell behind on empties the cache), and count from here.
    rt.block_on(settle(&cached));
    // A service's cache is warm: every key read once (`get_value`, as
    // `get_state` caches no value whose expiry it does not know).
    rt.block_on(each(&keys, cached.clone() as Arc<dyn StateStore>, |s, key, _| async move {
        s.get_value(&key).await.unwrap();
    }));
    let before = cached.metrics();
    let zipf = Zipf::new(n as f64, 1.0).expect("a Zipf distribution");
    let mut g = c.benchmark_group(format!("{backend}/zipf_95_5"));
    g.throughput(Throughput::Elements(ZIPF_OPS));
    for (name, reader) in [("cached", cached.clone() as Arc<dyn StateStore>), ("uncached", store.clone())] {
        let mut rng = SmallRng::seed_from_u64(7);
        g.bench_function(name, |b| {
            b.to_async(rt).iter(|| {
                let picks: Vec<(bool, usize)> = (0..ZIPF_OPS)
                    .map(|_| (rng.random_bool(0.05), zipf.sample(&mut rng) as usize - 1))
                    .collect();
                let (reader, writer, keys) = (reader.clone(), store.clone(), keys.clone());
                async move {
                    for (write, k) in picks {
                        if write {
                            writer.set(&keys[k], &k).await.unwrap();
                        } else {
                            black_box(reader.get_value(&keys[k]).await.unwrap());
                        }
                    }
                }
            })
        });
    }
    g.finish();
    let m = cached.metrics();
    let (hits, misses, bypassed) =
        (m.hits - before.hits, m.misses - before.misses, m.bypassed - before.bypassed);
    eprintln!(
        "{backend} zipf_95_5 through the near cache over {n} keys: hit ratio {:.3} ({hits} hits, {misses} misses, \
         {bypassed} bypassed, {} resets); holds {} entries, {} bytes",
        hits as f64 / (hits + misses + bypassed).max(1) as f64,
        m.resets - before.resets,
        m.entries,
        m.bytes
    );
}

/// Waits until the cache serves and its feed has been quiet for 200 ms
/// (a minute at most, then says so).
async fn settle(cached: &CachedStore) {
    let mut last = cached.metrics().invalidations;
    for _ in 0..300 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let now = cached.metrics().invalidations;
        if now == last && cached.serving() {
            return;
        }
        last = now;
    }
    eprintln!("the near cache's feed was still busy after a minute: measuring anyway");
}

/// Runs `op(store, key, index)` on every key, 64 at a time.
async fn each<F, Fut>(keys: &Arc<Vec<String>>, store: Arc<dyn StateStore>, op: F)
where
    F: Fn(Arc<dyn StateStore>, String, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let tasks = (0..64).map(|t| {
        let (store, keys, op) = (store.clone(), keys.clone(), op.clone());
        tokio::spawn(async move {
            for k in (t..keys.len()).step_by(64) {
                op(store.clone(), keys[k].clone(), k).await;
            }
        })
    });
    for t in futures_util::future::join_all(tasks).await {
        t.unwrap();
    }
}
