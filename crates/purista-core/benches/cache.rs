//! A near-cache hit beside a read of the default store it caches, side by
//! side in one run (typed `get` and raw `get_value`), over 1,000 keys.
//!
//! `cargo bench -p purista-core --bench cache`

use std::{hint::black_box, sync::Arc};

use criterion::{Criterion, criterion_group, criterion_main};
use purista_core::{CacheOptions, CachedStore, DefaultStateStore, StateStore, StateStoreExt};
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;

const KEYS: usize = 1_000;

#[derive(Serialize, Deserialize)]
struct Session {
    user: String,
    roles: Vec<String>,
    expires: u64,
}

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("session:{i:06}")).collect()
}

fn get(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let store = DefaultStateStore::new();
    let keys = keys();
    let cached: Arc<CachedStore> = rt.block_on(async {
        for (i, key) in keys.iter().enumerate() {
            let session =
                Session { user: format!("user-{i}"), roles: vec!["admin".into()], expires: i as u64 };
            store.set(key, &session).await.expect("set");
        }
        let cached = CachedStore::new(Arc::new(store.clone()), CacheOptions::default()).await.expect("cache");
        for key in &keys {
            cached.get_value(key).await.expect("warm");
        }
        cached
    });
    let mut group = c.benchmark_group("cache_get");
    let mut i = 0;
    let mut next = || {
        i = (i + 1) % KEYS;
        &keys[i]
    };
    group.bench_function("store get_value", |b| {
        b.to_async(&rt).iter(|| store.get_value(black_box(next())));
    });
    let mut i = 0;
    let mut next = || {
        i = (i + 1) % KEYS;
        &keys[i]
    };
    group.bench_function("cached get_value (hit)", |b| {
        b.to_async(&rt).iter(|| cached.get_value(black_box(next())));
    });
    let mut i = 0;
    let mut next = || {
        i = (i + 1) % KEYS;
        &keys[i]
    };
    group.bench_function("store typed get", |b| {
        b.to_async(&rt).iter(|| store.get::<Session>(black_box(next())));
    });
    let mut i = 0;
    let mut next = || {
        i = (i + 1) % KEYS;
        &keys[i]
    };
    group.bench_function("cached typed get (hit)", |b| {
        b.to_async(&rt).iter(|| cached.get::<Session>(black_box(next())));
    });
    group.finish();
    let m = cached.metrics();
    eprintln!("cache metrics after the run: hits {}, misses {}", m.hits, m.misses);
}

criterion_group!(benches, get);
criterion_main!(benches);
