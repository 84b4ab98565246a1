//! The default store against the plainest thing it could be: a `HashMap` of
//! JSON bytes behind a lock, doing the same work (serde included), in one run.
//!
//! `cargo bench -p purista-core --bench default_store`

use std::{collections::HashMap, hint::black_box, sync::Arc, time::Duration};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use parking_lot::RwLock;
use purista_core::{DefaultStateStore, Json, PutMode, PutOptions, StateStore, StateStoreExt};
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;

#[derive(Serialize, Deserialize, Clone)]
struct Session {
    user_id: String,
    cart: Vec<u32>,
    visits: u64,
}

fn session() -> Session {
    Session { user_id: "user-456".into(), cart: vec![1, 2, 3], visits: 7 }
}

/// The baseline: what a hand-written in-memory store would do.
#[derive(Default)]
struct Locked(RwLock<HashMap<String, Bytes>>);

impl Locked {
    fn get(&self, key: &str) -> Option<Bytes> {
        self.0.read().get(key).cloned()
    }
    fn set(&self, key: &str, value: Bytes) {
        self.0.write().insert(key.to_owned(), value);
    }
}

fn rt() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn single_key(c: &mut Criterion) {
    let rt = rt();
    let store = DefaultStateStore::new();
    let map = Locked::default();
    let value = Json::encode(&session()).unwrap();
    rt.block_on(store.set_state("session:1", value.clone())).unwrap();
    map.set("session:1", value.clone().into_bytes());

    let mut g = c.benchmark_group("single_key");
    g.bench_function("get_raw/store", |b| {
        b.to_async(&rt).iter(|| async { black_box(store.get_value("session:1").await.unwrap()) })
    });
    g.bench_function("get_raw/locked_map", |b| {
        b.to_async(&rt).iter(|| async { black_box(map.get("session:1")) })
    });
    g.bench_function("get_typed/store", |b| {
        b.to_async(&rt).iter(|| async { black_box(store.get::<Session>("session:1").await.unwrap()) })
    });
    g.bench_function("get_typed/locked_map", |b| {
        b.to_async(&rt).iter(|| async {
            let bytes = map.get("session:1").unwrap();
            black_box(serde_json::from_slice::<Session>(&bytes).unwrap())
        })
    });
    g.bench_function("set_raw/store", |b| {
        b.to_async(&rt).iter(|| async { store.set_state("session:1", value.clone()).await.unwrap() })
    });
    g.bench_function("set_raw/locked_map", |b| {
        b.to_async(&rt).iter(|| async { map.set("session:1", value.clone().into_bytes()) })
    });
    let s = session();
    g.bench_function("set_typed/store", |b| {
        b.to_async(&rt).iter(|| async { store.set("session:1", &s).await.unwrap() })
    });
    g.bench_function("set_typed/locked_map", |b| {
        b.to_async(&rt).iter(|| async { map.set("session:1", serde_json::to_vec(&s).unwrap().into()) })
    });
    g.finish();
}

fn many_names(c: &mut Criterion) {
    let rt = rt();
    let store = DefaultStateStore::new();
    let map = Locked::default();
    let keys: Vec<String> = (0..100).map(|i| format!("k:{i}")).collect();
    for k in &keys {
        rt.block_on(store.set(k, &1u32)).unwrap();
        map.set(k, Bytes::from_static(b"1"));
    }
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut g = c.benchmark_group("get_100_names");
    g.throughput(Throughput::Elements(100));
    g.bench_function("store/get_state", |b| {
        b.to_async(&rt).iter(|| async { black_box(store.get_state(&names).await.unwrap()) })
    });
    g.bench_function("store/100_sequential", |b| {
        b.to_async(&rt).iter(|| async {
            for n in &names {
                black_box(store.get_state(&[n]).await.unwrap());
            }
        })
    });
    g.bench_function("locked_map/batched", |b| {
        b.to_async(&rt).iter(|| async {
            let m = map.0.read();
            black_box(names.iter().map(|n| m.get(*n).cloned()).collect::<Vec<_>>())
        })
    });
    g.finish();
}

fn concurrent(c: &mut Criterion) {
    const TASKS: usize = 64;
    const OPS: usize = 100;
    let rt = rt();
    let store = Arc::new(DefaultStateStore::new());
    let map = Arc::new(Locked::default());
    let value = Json::encode(&session()).unwrap();
    let mut g = c.benchmark_group("concurrent_64_tasks");
    g.throughput(Throughput::Elements((TASKS * OPS) as u64));
    g.bench_function("store", |b| {
        b.to_async(&rt).iter(|| {
            let (store, value) = (store.clone(), value.clone());
            async move {
                let tasks = (0..TASKS).map(|t| {
                    let (store, value) = (store.clone(), value.clone());
                    tokio::spawn(async move {
                        for i in 0..OPS {
                            let key = format!("c:{t}:{}", i % 8);
                            store.set_state(&key, value.clone()).await.unwrap();
                            black_box(store.get_state(&[&key]).await.unwrap());
                        }
                    })
                });
                futures_util::future::join_all(tasks).await;
            }
        })
    });
    g.bench_function("locked_map", |b| {
        b.to_async(&rt).iter(|| {
            let (map, value) = (map.clone(), value.clone());
            async move {
                let tasks = (0..TASKS).map(|t| {
                    let (map, value) = (map.clone(), value.clone());
                    tokio::spawn(async move {
                        for i in 0..OPS {
                            let key = format!("c:{t}:{}", i % 8);
                            map.set(&key, value.clone().into_bytes());
                            black_box(map.get(&key));
                        }
                    })
                });
                futures_util::future::join_all(tasks).await;
            }
        })
    });
    g.finish();
}

fn cas_counter(c: &mut Criterion) {
    const TASKS: usize = 16;
    const EACH: usize = 50;
    let rt = rt();
    let store = Arc::new(DefaultStateStore::new());
    let mut g = c.benchmark_group("cas_counter_16_tasks");
    g.throughput(Throughput::Elements((TASKS * EACH) as u64));
    g.bench_function(BenchmarkId::new("store", "update"), |b| {
        b.to_async(&rt).iter(|| {
            in_tasks(TASKS, EACH, store.clone(), |store| async move {
                store.update("counter", None, |n: Option<u64>| n.unwrap_or(0) + 1).await.unwrap();
            })
        })
    });
    g.bench_function(BenchmarkId::new("store", "increment"), |b| {
        b.to_async(&rt).iter(|| {
            in_tasks(TASKS, EACH, store.clone(), |store| async move {
                store.increment("counter3", 1, None).await.unwrap();
            })
        })
    });
    // The same loop by hand on the contract, to see what `update` costs.
    g.bench_function(BenchmarkId::new("store", "manual_cas"), |b| {
        b.to_async(&rt).iter(|| {
            in_tasks(TASKS, EACH, store.clone(), |store| async move {
                loop {
                    let entry = store.get_entry("counter2").await.unwrap();
                    let (n, mode) = match entry {
                        Some(e) => (e.value.decode::<u64>().unwrap(), PutMode::Update(e.etag)),
                        None => (0, PutMode::Create),
                    };
                    let opts = PutOptions { mode, ttl: None };
                    if store.put("counter2", Json::encode(&(n + 1)).unwrap(), opts).await.is_ok() {
                        break;
                    }
                }
            })
        })
    });
    g.finish();
}

/// `tasks` tasks, each running `op` `each` times on `store`.
async fn in_tasks<F, Fut>(tasks: usize, each: usize, store: Arc<DefaultStateStore>, op: F)
where
    F: Fn(Arc<DefaultStateStore>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let tasks = (0..tasks).map(|_| {
        let (store, op) = (store.clone(), op.clone());
        tokio::spawn(async move {
            for _ in 0..each {
                op(store.clone()).await;
            }
        })
    });
    futures_util::future::join_all(tasks).await;
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = single_key, many_names, concurrent, cas_counter
}
criterion_main!(benches);
