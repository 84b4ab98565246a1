//! One set of measurements, written once: a store against the raw client of
//! its backend doing the same work, in the same run, on the same server.
//! Each backend's bench file implements [`Raw`] and calls [`run`].

mod cache;

use std::{future::Future, hint::black_box, sync::Arc, time::Duration};

use bytes::Bytes;
use criterion::{BenchmarkGroup, Criterion, Throughput, measurement::WallTime};
use purista_core::{Json, Lease, StateStore, StateStoreExt};
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;

/// The raw client doing what the store does, without the store.
pub trait Raw: Send + Sync + 'static {
    fn get(&self, key: &str) -> impl Future<Output = Option<Bytes>> + Send;
    fn set(&self, key: &str, value: Bytes) -> impl Future<Output = ()> + Send;
    /// The backend's batched read (MGET, GetBulkState ...).
    fn get_many(&self, keys: &[String]) -> impl Future<Output = Vec<Option<Bytes>>> + Send;
    /// The backend's own atomic increment by 1, where it has one (`false`:
    /// none, nothing to compare with).
    fn increment(&self, _key: &str) -> impl Future<Output = bool> + Send {
        async { false }
    }
    /// The backend's usual lock: take `key` for one holder with a TTL, then
    /// release it only if still held by that holder (`false`: none).
    fn lock_cycle(&self, _key: &str) -> impl Future<Output = bool> + Send {
        async { false }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Session {
    user_id: String,
    cart: Vec<u32>,
    visits: u64,
}

fn session() -> Session {
    Session { user_id: "user-456".into(), cart: vec![1, 2, 3], visits: 7 }
}

pub const TASKS: usize = 64;
pub const OPS_PER_TASK: usize = 20;
pub const CAS_TASKS: usize = 8;
pub const CAS_EACH: usize = 10;
/// The TTL of the locks taken (each released at once).
pub const LOCK_TTL: Duration = Duration::from_secs(10);

pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args()
}

/// Every measurement of issue 7 for one backend. `prefix` keeps this run's
/// keys apart from anything else on the server; keys use `.` and `-` only, so
/// that every backend stores them as they are and the raw client reads the
/// same key the store wrote.
pub fn run<R: Raw>(c: &mut Criterion, rt: &Runtime, backend: &str, store: Arc<dyn StateStore>, raw: Arc<R>) {
    let prefix = format!("bench-{}-{}", backend, std::process::id());
    let key = format!("{prefix}.session");
    let value = Json::encode(&session()).unwrap();
    rt.block_on(store.set_state(&key, value.clone())).unwrap();

    let mut g = c.benchmark_group(format!("{backend}/single_key"));
    g.throughput(Throughput::Elements(1));
    single_key(&mut g, rt, &store, &raw, &key, &value);
    g.finish();

    let mut g = c.benchmark_group(format!("{backend}/get_100_names"));
    g.throughput(Throughput::Elements(100));
    many_names(&mut g, rt, &store, &raw, &prefix);
    g.finish();

    if rt.block_on(raw.lock_cycle(&format!("{prefix}.raw-lock"))) {
        let mut g = c.benchmark_group(format!("{backend}/lock"));
        g.throughput(Throughput::Elements(1));
        let name = format!("{prefix}.lock");
        g.bench_function("store_acquire_release", |b| {
            b.to_async(rt).iter(|| async {
                let lease = Lease::try_acquire(store.clone(), &name, LOCK_TTL).await.unwrap();
                lease.expect("free").release().await.unwrap();
            })
        });
        let key = format!("{prefix}.raw-lock");
        g.bench_function("raw_acquire_release", |b| {
            b.to_async(rt).iter(|| async { assert!(raw.lock_cycle(&key).await) })
        });
        g.finish();
    }

    if store.capabilities().watch {
        cache::run(c, rt, backend, &store, &raw, &prefix);
    }

    let mut g = c.benchmark_group(format!("{backend}/concurrent_{TASKS}_tasks"));
    g.throughput(Throughput::Elements((TASKS * OPS_PER_TASK * 2) as u64));
    concurrent(&mut g, rt, &store, &raw, &prefix, &value);
    g.finish();

    if store.capabilities().etag && store.capabilities().create_only {
        for tasks in [1, CAS_TASKS, TASKS] {
            let mut g = c.benchmark_group(format!("{backend}/counter_{tasks}_tasks"));
            g.throughput(Throughput::Elements((tasks * CAS_EACH) as u64));
            let counter = format!("{prefix}.counter");
            g.bench_function("store_update", |b| {
                b.to_async(rt).iter(|| {
                    in_tasks(tasks, store.clone(), counter.clone(), |store, counter| async move {
                        store.update(&counter, None, |n: Option<i64>| n.unwrap_or(0) + 1).await.unwrap();
                    })
                })
            });
            g.bench_function("store_increment", |b| {
                b.to_async(rt).iter(|| {
                    in_tasks(tasks, store.clone(), counter.clone(), |store, counter| async move {
                        store.increment(&counter, 1, None).await.unwrap();
                    })
                })
            });
            if rt.block_on(raw.increment(&format!("{prefix}.raw-counter"))) {
                g.bench_function("raw_increment", |b| {
                    b.to_async(rt).iter(|| {
                        let key = format!("{prefix}.raw-counter");
                        in_tasks(tasks, raw.clone(), key, |raw, key| async move {
                            raw.increment(&key).await;
                        })
                    })
                });
            }
            g.finish();
        }
    }
}

/// `tasks` tasks, each running `op` [`CAS_EACH`] times on `target` and `key`.
pub async fn in_tasks<T, F, Fut>(tasks: usize, target: Arc<T>, key: String, op: F)
where
    T: Send + Sync + ?Sized + 'static,
    F: Fn(Arc<T>, String) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let handles = (0..tasks).map(|_| {
        let (target, key, op) = (target.clone(), key.clone(), op.clone());
        tokio::spawn(async move {
            for _ in 0..CAS_EACH {
                op(target.clone(), key.clone()).await;
            }
        })
    });
    for h in futures_util::future::join_all(handles).await {
        h.unwrap();
    }
}

fn single_key<R: Raw>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    store: &Arc<dyn StateStore>,
    raw: &Arc<R>,
    key: &str,
    value: &Json,
) {
    g.bench_function("get_json/store", |b| {
        b.to_async(rt).iter(|| async { black_box(store.get_value(key).await.unwrap()) })
    });
    g.bench_function("get_json/raw", |b| b.to_async(rt).iter(|| async { black_box(raw.get(key).await) }));
    g.bench_function("get_typed/store", |b| {
        b.to_async(rt).iter(|| async { black_box(store.get::<Session>(key).await.unwrap()) })
    });
    g.bench_function("get_typed/raw", |b| {
        b.to_async(rt).iter(|| async {
            let bytes = raw.get(key).await.unwrap();
            black_box(serde_json::from_slice::<Session>(&bytes).unwrap())
        })
    });
    g.bench_function("set_json/store", |b| {
        b.to_async(rt).iter(|| async { store.set_state(key, value.clone()).await.unwrap() })
    });
    g.bench_function("set_json/raw", |b| {
        b.to_async(rt).iter(|| async { raw.set(key, value.clone().into_bytes()).await })
    });
    let s = session();
    g.bench_function("set_typed/store", |b| {
        b.to_async(rt).iter(|| async { store.set(key, &s).await.unwrap() })
    });
    g.bench_function("set_typed/raw", |b| {
        b.to_async(rt).iter(|| async { raw.set(key, serde_json::to_vec(&s).unwrap().into()).await })
    });
}

fn many_names<R: Raw>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    store: &Arc<dyn StateStore>,
    raw: &Arc<R>,
    prefix: &str,
) {
    let keys: Vec<String> = (0..100).map(|i| format!("{prefix}.many.{i}")).collect();
    rt.block_on(async {
        for (i, k) in keys.iter().enumerate() {
            store.set(k, &i).await.unwrap();
        }
    });
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    g.bench_function("store_get_state", |b| {
        b.to_async(rt).iter(|| async { black_box(store.get_state(&names).await.unwrap()) })
    });
    g.bench_function("store_100_sequential_gets", |b| {
        b.to_async(rt).iter(|| async {
            for n in &names {
                black_box(store.get_value(n).await.unwrap());
            }
        })
    });
    g.bench_function("raw_batched", |b| {
        b.to_async(rt).iter(|| async { black_box(raw.get_many(&keys).await) })
    });
}

fn concurrent<R: Raw>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    store: &Arc<dyn StateStore>,
    raw: &Arc<R>,
    prefix: &str,
    value: &Json,
) {
    g.bench_function("store", |b| {
        b.to_async(rt).iter(|| {
            let (store, value, prefix) = (store.clone(), value.clone(), prefix.to_string());
            async move {
                let tasks = (0..TASKS).map(|t| {
                    let (store, value, key) = (store.clone(), value.clone(), format!("{prefix}.c.{t}"));
                    tokio::spawn(async move {
                        for _ in 0..OPS_PER_TASK {
                            store.set_state(&key, value.clone()).await.unwrap();
                            black_box(store.get_value(&key).await.unwrap());
                        }
                    })
                });
                for t in futures_util::future::join_all(tasks).await {
                    t.unwrap();
                }
            }
        })
    });
    g.bench_function("raw", |b| {
        b.to_async(rt).iter(|| {
            let (raw, value, prefix) = (raw.clone(), value.clone(), prefix.to_string());
            async move {
                let tasks = (0..TASKS).map(|t| {
                    let (raw, value, key) = (raw.clone(), value.clone(), format!("{prefix}.c.{t}"));
                    tokio::spawn(async move {
                        for _ in 0..OPS_PER_TASK {
                            raw.set(&key, value.clone().into_bytes()).await;
                            black_box(raw.get(&key).await);
                        }
                    })
                });
                for t in futures_util::future::join_all(tasks).await {
                    t.unwrap();
                }
            }
        })
    });
}
