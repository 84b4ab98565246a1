//! The default store against the plainest thing it could be: a `HashMap` of
//! JSON bytes behind a lock, doing the same work (serde included), in one run.
//!
//! `cargo bench -p purista-core --bench default_store`

use std::{
    collections::HashMap,
    hash::BuildHasher,
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
    measurement::WallTime,
};
use dashmap::DashMap;
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
struct Locked<H = std::hash::RandomState>(RwLock<HashMap<String, Bytes, H>>);

impl<H: BuildHasher> Locked<H> {
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
    let map: Locked = Locked::default();
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
    // The same calls through `dyn StateStore` (what `context.states` is):
    // the boxed future of every object-safe call is the difference.
    let dyn_store: &dyn StateStore = &store;
    g.bench_function("get_raw/store_dyn", |b| {
        b.to_async(&rt).iter(|| async { black_box(dyn_store.get_value("session:1").await.unwrap()) })
    });
    // The store's map alone, through `Backend` (no key checks, prefix, span
    // or boxed future): what the data structure costs against the bare map.
    g.bench_function("get_raw/store_map_only", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(purista_core::backend::Backend::get_value(&store, "session:1").await.unwrap())
        })
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
    g.bench_function("set_raw/store_dyn", |b| {
        b.to_async(&rt).iter(|| async { dyn_store.set_state("session:1", value.clone()).await.unwrap() })
    });
    g.bench_function("set_raw/store_map_only", |b| {
        b.to_async(&rt).iter(|| async {
            purista_core::backend::Backend::set_state(&store, "session:1", value.clone()).await.unwrap()
        })
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
    let map: Locked = Locked::default();
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

/// 64 tasks, each setting and reading its own 8 keys 100 times, on 2 worker
/// threads: the store against the locked map (the README's figure), then the
/// maps the store could be built on, side by side (how its map was chosen).
fn concurrent(c: &mut Criterion) {
    let rt = rt();
    let value = Json::encode(&session()).unwrap();
    let mut g = c.benchmark_group("concurrent_64_tasks");
    g.throughput(Throughput::Elements((SET_GET_TASKS * OPS) as u64));
    let store = Arc::new(DefaultStateStore::new());
    g.bench_function("store", |b| {
        b.to_async(&rt).iter(|| {
            set_get_tasks(store.clone(), value.clone(), |store, key, value| async move {
                store.set_state(&key, value).await.unwrap();
                black_box(store.get_value(&key).await.unwrap());
            })
        })
    });
    let dyn_store: Arc<dyn StateStore> = store.clone();
    g.bench_function("store_dyn", |b| {
        b.to_async(&rt).iter(|| {
            set_get_tasks(dyn_store.clone(), value.clone(), |store, key, value| async move {
                store.set_state(&key, value).await.unwrap();
                black_box(store.get_value(&key).await.unwrap());
            })
        })
    });
    bench_map(&mut g, &rt, "locked_map", Locked::<std::hash::RandomState>::default(), &value);
    g.finish();

    let mut g = c.benchmark_group("maps_64_tasks");
    g.throughput(Throughput::Elements((SET_GET_TASKS * OPS) as u64));
    bench_map(&mut g, &rt, "locked_map_foldhash", Locked::<Fold>::default(), &value);
    bench_map(&mut g, &rt, "sharded_32", Sharded::default(), &value);
    bench_map(&mut g, &rt, "dashmap", DashMap::<String, Bytes, Fold>::default(), &value);
    bench_map(&mut g, &rt, "papaya", papaya::HashMap::<String, Bytes, Fold>::default(), &value);
    bench_map(&mut g, &rt, "scc", scc::HashMap::<String, Bytes, Fold>::default(), &value);
    g.finish();

    // One caller: what each map costs when nothing contends.
    let mut g = c.benchmark_group("maps_single_key");
    single_map(&mut g, "locked_map_foldhash", Locked::<Fold>::default(), &value);
    single_map(&mut g, "sharded_32", Sharded::default(), &value);
    single_map(&mut g, "dashmap", DashMap::<String, Bytes, Fold>::default(), &value);
    single_map(&mut g, "papaya", papaya::HashMap::<String, Bytes, Fold>::default(), &value);
    single_map(&mut g, "scc", scc::HashMap::<String, Bytes, Fold>::default(), &value);
    g.finish();
}

fn single_map<M: Map>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, map: M, value: &Json) {
    let value = value.clone().into_bytes();
    map.set("session:1", value.clone());
    g.bench_function(format!("get/{name}"), |b| b.iter(|| black_box(map.get("session:1"))));
    g.bench_function(format!("set/{name}"), |b| b.iter(|| map.set("session:1", value.clone())));
}

const SET_GET_TASKS: usize = 64;
const OPS: usize = 100;

fn bench_map<M: Map>(g: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, name: &str, map: M, value: &Json) {
    let map = Arc::new(map);
    g.bench_function(name, |b| {
        b.to_async(rt).iter(|| {
            set_get_tasks(map.clone(), value.clone(), |map, key, value| async move {
                map.set(&key, value.into_bytes());
                black_box(map.get(&key));
            })
        })
    });
}

/// [`SET_GET_TASKS`] tasks, each running `op` [`OPS`] times over its own 8 keys.
async fn set_get_tasks<S, F, Fut>(s: Arc<S>, value: Json, op: F)
where
    S: ?Sized + Send + Sync + 'static,
    F: Fn(Arc<S>, String, Json) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let tasks = (0..SET_GET_TASKS).map(|t| {
        let (s, value, op) = (s.clone(), value.clone(), op.clone());
        tokio::spawn(async move {
            for i in 0..OPS {
                op(s.clone(), format!("c:{t}:{}", i % 8), value.clone()).await;
            }
        })
    });
    futures_util::future::join_all(tasks).await;
}

type Fold = foldhash::fast::RandomState;

/// What each candidate map offers the benchmark.
trait Map: Send + Sync + 'static {
    fn get(&self, key: &str) -> Option<Bytes>;
    fn set(&self, key: &str, value: Bytes);
}

impl<H: BuildHasher + Send + Sync + 'static> Map for Locked<H> {
    fn get(&self, key: &str) -> Option<Bytes> {
        Locked::get(self, key)
    }
    fn set(&self, key: &str, value: Bytes) {
        Locked::set(self, key, value)
    }
}

/// The store's own layout, bare: 32 locked maps picked by key hash.
struct Sharded(Box<[Locked<Fold>]>, Fold);

impl Default for Sharded {
    fn default() -> Self {
        Sharded((0..32).map(|_| Locked::default()).collect(), Fold::default())
    }
}

impl Map for Sharded {
    fn get(&self, key: &str) -> Option<Bytes> {
        self.0[(self.1.hash_one(key) >> 59) as usize].get(key)
    }
    fn set(&self, key: &str, value: Bytes) {
        self.0[(self.1.hash_one(key) >> 59) as usize].set(key, value)
    }
}

impl Map for DashMap<String, Bytes, Fold> {
    fn get(&self, key: &str) -> Option<Bytes> {
        DashMap::get(self, key).map(|v| v.clone())
    }
    fn set(&self, key: &str, value: Bytes) {
        self.insert(key.to_owned(), value);
    }
}

impl Map for papaya::HashMap<String, Bytes, Fold> {
    fn get(&self, key: &str) -> Option<Bytes> {
        self.pin().get(key).cloned()
    }
    fn set(&self, key: &str, value: Bytes) {
        self.pin().insert(key.to_owned(), value);
    }
}

impl Map for scc::HashMap<String, Bytes, Fold> {
    fn get(&self, key: &str) -> Option<Bytes> {
        self.read_sync(key, |_, v| v.clone())
    }
    fn set(&self, key: &str, value: Bytes) {
        self.upsert_sync(key.to_owned(), value);
    }
}

fn cas_counter(c: &mut Criterion) {
    // 8 and 64 tasks on one counter, as in issue #12's targets.
    const OPS: usize = 800;
    let rt = rt();
    let store = Arc::new(DefaultStateStore::new());
    for tasks in [8, 64] {
        let each = OPS / tasks;
        let mut g = c.benchmark_group(format!("cas_counter_{tasks}_tasks"));
        g.throughput(Throughput::Elements((tasks * each) as u64));
        g.bench_function(BenchmarkId::new("store", "update"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                timed_tasks(tasks, each * iters as usize, store.clone(), |store| async move {
                    store.update("counter", None, |n: Option<u64>| n.unwrap_or(0) + 1).await.unwrap();
                })
            })
        });
        g.bench_function(BenchmarkId::new("store", "increment"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                timed_tasks(tasks, each * iters as usize, store.clone(), |store| async move {
                    store.increment("counter3", 1, None).await.unwrap();
                })
            })
        });
        // The same loop by hand on the contract, to see what `update` costs.
        g.bench_function(BenchmarkId::new("store", "manual_cas"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                timed_tasks(tasks, each * iters as usize, store.clone(), |store| async move {
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
}

/// `in_tasks`, timed: the tasks are spawned once for all of a sample's
/// iterations, so that spawning 64 tasks is not counted as counting.
async fn timed_tasks<F, Fut>(tasks: usize, each: usize, store: Arc<DefaultStateStore>, op: F) -> Duration
where
    F: Fn(Arc<DefaultStateStore>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    in_tasks(tasks, each, store, op).await;
    start.elapsed()
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
