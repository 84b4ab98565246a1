//! Resharding a 3-master Redis Cluster under load: the slot holding every
//! key of the test moves from one master to another and on to the third
//! (`SETSLOT IMPORTING/MIGRATING`, `MIGRATE` in batches, `SETSLOT NODE`),
//! while several stores, each its own connection, write and read those
//! keys. Every call must succeed: an `ASK` (slot mid-migration), `TRYAGAIN`
//! (a key and its version key split by the move) or `MOVED` (a stale slot
//! map) answer means the command did not run, so nothing forbids sending it
//! again. Every acknowledged write reads back afterwards.

mod support_redis;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use integration_tests::fixtures::redis_topology::Cluster;
use purista_core::{ETag, ErrorKind, Json, Op, PutOptions, StateStore, StoreConfig, testkit::unique};
use purista_redis_state_store::{RedisStateStore, fred::util::redis_keyslot};

/// Stores writing at once, each its own connection.
const STORES: usize = 4;
/// Keys each store overwrites again and again (others are created, updated
/// and removed once).
const KEYS_PER_STORE: i64 = 6;
/// A pause between two rounds of a worker's calls, to keep the load bounded.
const PACE: Duration = Duration::from_millis(3);

/// What one worker had acknowledged (`None`: removed; counters too), and
/// what failed.
#[derive(Default)]
struct Outcome {
    acked: HashMap<String, Option<i64>>,
    calls: usize,
    failures: Vec<String>,
}

impl Outcome {
    fn fail(&mut self, what: &str, key: &str, err: &purista_core::Error) {
        self.failures.push(format!("{what} {key}: {:?}: {err}", err.kind()));
    }

    fn check<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, key: &str, got: T, want: T) {
        if got != want {
            self.failures.push(format!("{what} {key}: read {got:?}, acknowledged {want:?}"));
        }
    }
}

/// One store's calls until `stop`: overwrite and read back its own keys,
/// create / update-if-ETag / remove fresh ones, count, read them all at once.
/// Each key has this worker as its only writer, so every read must return
/// the last acknowledged write.
async fn worker(store: RedisStateStore, id: usize, stop: Arc<AtomicBool>) -> Outcome {
    let mut out = Outcome::default();
    let mut n: i64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        out.calls += 1;
        let key = format!("w{id}:{}", n % KEYS_PER_STORE);
        match store.set(&key, &n).await {
            Ok(()) => drop(out.acked.insert(key.clone(), Some(n))),
            Err(e) => out.fail("set", &key, &e),
        }
        match store.get::<i64>(&key).await {
            Ok(got) => {
                let want = out.acked.get(&key).copied().flatten();
                out.check("get", &key, got, want);
            }
            Err(e) => out.fail("get", &key, &e),
        }
        if n % 3 == 0 {
            fresh(&store, &mut out, format!("w{id}:new{n}"), n).await;
        }
        // Remove a fresh key of an earlier round.
        if n % 3 == 0 && n > 6 {
            let old = format!("w{id}:new{}", n - 6);
            match store.remove(&old, None).await {
                Ok(()) => drop(out.acked.insert(old, None)),
                Err(e) => out.fail("remove", &old, &e),
            }
        }
        let counter = format!("w{id}:count");
        match store.increment(&counter, 1, None).await {
            Ok(sum) => {
                let want = out.acked.get(&counter).copied().flatten().unwrap_or(0) + 1;
                out.check("increment", &counter, sum, want);
                out.acked.insert(counter, Some(sum));
            }
            Err(e) => out.fail("increment", &counter, &e),
        }
        if n % 4 == 0 {
            read_all(&store, &mut out).await;
        }
        tokio::time::sleep(PACE).await;
    }
    out
}

/// Create-only, read with the ETag, update if that ETag still matches.
async fn fresh(store: &RedisStateStore, out: &mut Outcome, key: String, n: i64) {
    let etag = match store.put(&key, Json::encode(&n).unwrap(), PutOptions::create()).await {
        Ok(etag) => etag.expect("redis returns the ETag"),
        Err(e) => return out.fail("create", &key, &e),
    };
    out.acked.insert(key.clone(), Some(n));
    match store.get_entry(&key).await {
        Ok(Some(entry)) => out.check(
            "get_entry",
            &key,
            (entry.etag.clone(), entry.value),
            (etag.clone(), Json::encode(&n).unwrap()),
        ),
        Ok(None) => out.failures.push(format!("get_entry {key}: missing after create")),
        Err(e) => return out.fail("get_entry", &key, &e),
    }
    match store.put(&key, Json::encode(&(n + 1)).unwrap(), PutOptions::update(etag)).await {
        Ok(_) => drop(out.acked.insert(key, Some(n + 1))),
        Err(e) => out.fail("update", &key, &e),
    }
}

/// Every key the worker wrote, in one `get_state` (one slot: one `MGET`).
async fn read_all(store: &RedisStateStore, out: &mut Outcome) {
    let keys: Vec<String> = out.acked.keys().cloned().collect();
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    match store.get_state(&names).await {
        Ok(map) => {
            for key in &keys {
                let got = map.get(key).cloned().flatten().map(|j| j.decode::<i64>().ok());
                let want = out.acked[key].map(Some);
                out.check("get_state", key, got, want);
            }
        }
        Err(e) => out.fail("get_state", "(all)", &e),
    }
}

/// Runs `f` (it calls `redis-cli`) off the runtime's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("redis-cli task")
}

/// One migration of `slot` from `from` to `to` while the workers run: an
/// `ASK` window before and after the keys move, then `MOVED` for every
/// client that still has the old slot map. Returns how many keys moved.
async fn migrate(cluster: &Arc<Cluster>, slot: u16, from: u16, to: u16) -> usize {
    let c = Arc::clone(cluster);
    let migration = blocking(move || c.begin_migration(slot, from, to)).await.expect("begin the migration");
    let migration = Arc::new(migration);
    // New keys are asked for on the target, existing ones served by the source.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let m = Arc::clone(&migration);
    let moved = blocking(move || m.move_keys()).await.expect("move the keys");
    // Every key is on the target now: the source asks for all of them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocking(move || migration.finish()).await.expect("give the slot to the target");
    for &port in &cluster.ports {
        assert_eq!(cluster.owner_of(slot, port), Some(to), "node {port} names the new owner");
    }
    // Clients with the old slot map are told MOVED.
    tokio::time::sleep(Duration::from_millis(600)).await;
    moved
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_under_load_fails_no_call_and_loses_nothing() {
    let Some(cluster) = Cluster::start().await else { return };
    let tag = unique("reshard");
    let slot = redis_keyslot(tag.as_bytes());
    let config = StoreConfig { key_prefix: format!("{{{tag}}}:"), ..StoreConfig::default() };
    let first = cluster.owner_of(slot, cluster.ports[0]).expect("the slot has an owner");
    let mut others = cluster.ports.iter().copied().filter(|&p| p != first);
    let (second, third) = (others.next().expect("3 masters"), others.next().expect("3 masters"));
    let cluster = Arc::new(cluster);

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for id in 0..STORES {
        let builder = support_redis::builder(&cluster.url()).store_config(config.clone());
        let store = builder.connect().await.expect("connect to the cluster");
        workers.push(tokio::spawn(worker(store, id, Arc::clone(&stop))));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moved_first = migrate(&cluster, slot, first, second).await;
    let moved_second = migrate(&cluster, slot, second, third).await;
    stop.store(true, Ordering::Relaxed);

    let mut acked = HashMap::new();
    let mut failures = Vec::new();
    let mut calls = 0;
    for w in workers {
        let out = w.await.expect("worker");
        calls += out.calls;
        failures.extend(out.failures);
        acked.extend(out.acked);
    }
    eprintln!("{calls} rounds of calls; keys moved: {moved_first}, then {moved_second}");
    assert!(moved_first > 0 && moved_second > 0, "the migrations moved the test's keys");
    assert!(
        failures.is_empty(),
        "{} failures, first ones: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );

    // A new client, with the final slot map, reads every acknowledged write.
    let check = support_redis::builder(&cluster.url()).store_config(config).connect().await.expect("connect");
    for (key, want) in &acked {
        assert_eq!(check.get::<i64>(key).await.expect("read after the migrations"), *want, "{key}");
    }
    check.destroy().await.expect("close");
    eprintln!("cluster logs in {}", cluster.dir().display());
}

/// What keys `a` and `b` hold once a transaction applied (`None`: it must
/// fail, a condition conflicts).
type Want = Option<[Option<i64>; 2]>;

/// Transactions that touch a key again after writing or removing it, over
/// keys `a` and `b` (both hold 1 before), with what they leave.
fn touch_again(a: &str, b: &str) -> Vec<(Vec<Op>, Want)> {
    let put = |k: &str, n: i64| Op::put(k, Json::encode(&n).unwrap());
    let create = |k: &str, n: i64| Op::put_with(k, Json::encode(&n).unwrap(), PutOptions::create());
    vec![
        (vec![Op::remove(a), put(a, 2)], Some([Some(2), Some(1)])),
        (vec![put(a, 2), Op::remove(a)], Some([None, Some(1)])),
        (vec![put(a, 2), put(a, 3), Op::remove(a), Op::remove(a), put(a, 4)], Some([Some(4), Some(1)])),
        (vec![Op::remove(a), create(a, 5)], Some([Some(5), Some(1)])),
        (vec![Op::remove(a), put(b, 2), put(a, 3), Op::remove(b)], Some([Some(3), None])),
        (vec![Op::remove(b), Op::remove(a), create(b, 6), put(a, 7), put(b, 8)], Some([Some(7), Some(8)])),
        (vec![Op::remove(a), put(a, 2), Op::remove_if(b, ETag::new("stale"))], None),
        (vec![Op::remove(a), put(b, 2), create(b, 3)], None),
    ]
}

/// One transaction of [`touch_again`] and its answer.
struct Tried {
    phase: &'static str,
    keys: [String; 2],
    ops: Vec<Op>,
    want: Want,
    got: purista_core::Result<()>,
}

/// The keys of a phase's shape `i`.
fn keys_of(phase: &str, i: usize) -> [String; 2] {
    [format!("{phase}{i}:a"), format!("{phase}{i}:b")]
}

/// Every shape of [`touch_again`] on the phase's keys, one after another.
async fn run_shapes(store: &RedisStateStore, phase: &'static str) -> Vec<Tried> {
    let mut tried = Vec::new();
    for i in 0..touch_again("", "").len() {
        let keys = keys_of(phase, i);
        let (ops, want) = touch_again(&keys[0], &keys[1]).swap_remove(i);
        let got = store.transaction(ops.clone()).await;
        tried.push(Tried { phase, keys, ops, want, got });
    }
    tried
}

/// While a slot is migrating, a script run by a node may touch only keys
/// that node holds: one that removed a key and then touched it again failed
/// half-way, its earlier writes kept. Every transaction here must apply
/// whole or not at all: with its keys on the migrating source, then while
/// they move and the slot is handed over (the store waits out `ASK`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_during_a_migration_apply_whole_or_not_at_all() {
    let Some(cluster) = Cluster::start().await else { return };
    let tag = unique("txmig");
    let slot = redis_keyslot(tag.as_bytes());
    let config = StoreConfig { key_prefix: format!("{{{tag}}}:"), ..StoreConfig::default() };
    let store = support_redis::builder(&cluster.url()).store_config(config.clone()).connect().await.unwrap();
    let from = cluster.owner_of(slot, cluster.ports[0]).expect("the slot has an owner");
    let to = cluster.ports.iter().copied().find(|&p| p != from).expect("3 masters");
    // Every key is set before the migration: during it a new key is only
    // served once the migration ends.
    let mut before = HashMap::new();
    for phase in ["source", "moving"] {
        for i in 0..touch_again("", "").len() {
            for k in keys_of(phase, i) {
                store.set(&k, &1).await.unwrap();
                let entry = store.get_entry(&k).await.unwrap().expect("just written");
                before.insert(k, Some((entry.value, entry.etag)));
            }
        }
    }

    let migration = blocking(move || cluster.begin_migration(slot, from, to).map(|m| (cluster, m))).await;
    let (cluster, migration) = migration.expect("begin the migration");
    let migration = Arc::new(migration);
    let mut results = run_shapes(&store, "source").await;
    let m = Arc::clone(&migration);
    let moving = async move {
        let moved = blocking(move || m.move_keys()).await.expect("move the keys");
        tokio::time::sleep(Duration::from_millis(300)).await;
        blocking(move || migration.finish()).await.expect("give the slot to the target");
        moved
    };
    let (moved, during) = tokio::join!(moving, run_shapes(&store, "moving"));
    assert!(moved > 0, "the test's keys moved");
    results.extend(during);

    // Read back with a client that has the final slot map.
    let check = support_redis::builder(&cluster.url()).store_config(config).connect().await.expect("connect");
    let mut failures = Vec::new();
    for Tried { phase, keys, ops, want, got } in results {
        let mut now = Vec::new();
        for k in &keys {
            let entry = check.get_entry(k).await.expect("read after the migration");
            now.push(entry.map(|e| (e.value, e.etag)));
        }
        let untouched = now[0] == before[&keys[0]] && now[1] == before[&keys[1]];
        let values: Vec<Option<i64>> =
            now.iter().map(|e| e.as_ref().and_then(|(v, _)| v.decode::<i64>().ok())).collect();
        let verdict = match (&got, want) {
            (Ok(()), Some(want)) if values == want => continue,
            (Err(e), None) if e.kind() == ErrorKind::Conflict && untouched => continue,
            (Err(_), _) if !untouched => "partly applied",
            (Ok(()), _) => "acknowledged, but its keys hold something else",
            (Err(_), _) => "refused, nothing applied",
        };
        failures.push(format!("{phase} {ops:?}: {verdict}: {got:?}, now {values:?}, wanted {want:?}"));
    }
    store.destroy().await.expect("close");
    check.destroy().await.expect("close");
    assert!(failures.is_empty(), "{} failures: {failures:#?}", failures.len());
}
