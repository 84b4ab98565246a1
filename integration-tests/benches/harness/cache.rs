//! The near cache over a real server: a hit beside the raw client's read of
//! the same key, and a Zipf(1.0) read-mostly workload (95 % reads through
//! the cache, 5 % writes by another instance, which reach the cache through
//! the server's change feed) against the same workload uncached.

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
    rt.block_on(fill(store, &keys));
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
    let ratio = m.hits as f64 / (m.hits + m.misses).max(1) as f64;
    eprintln!(
        "{backend} near cache: hit ratio {ratio:.3} ({} hits, {} misses, {} invalidations, {} entries, {} bytes) over {n} keys",
        m.hits, m.misses, m.invalidations, m.entries, m.bytes
    );
}

/// Writes every key once, 64 at a time.
async fn fill(store: &Arc<dyn StateStore>, keys: &Arc<Vec<String>>) {
    let tasks = (0..64).map(|t| {
        let (store, keys) = (store.clone(), keys.clone());
        tokio::spawn(async move {
            for k in (t..keys.len()).step_by(64) {
                store.set(&keys[k], &k).await.unwrap();
            }
        })
    });
    for t in futures_util::future::join_all(tasks).await {
        t.unwrap();
    }
}
