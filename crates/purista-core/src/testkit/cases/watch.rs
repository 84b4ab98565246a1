//! Watch cases: a watcher converges. The last event it yields for a key
//! matches the key's final state, and it loses nothing unless it yields an
//! error saying so (then it starts clean).
//!
//! Each case follows the stream the way a careful consumer would: it applies
//! every event to a model of the watched keys and, on an error, reads the
//! keys afresh (events before the error may be lost). Once the writers are
//! done, the model must come to equal the state read from the store, and
//! stay equal while the stream goes quiet. Waits are bounded; no duration is
//! asserted.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::support::*;
use crate::{
    Json, Op, StateStore, StateStoreExt, StoreConfig, WatchKind, WatchStream,
    testkit::{Factory, unique},
};

/// How long the model may take to match the store once the writers are done.
const CONVERGE_LIMIT: Duration = Duration::from_secs(20);
/// How long the stream must stay quiet (and the model right) to be done.
const QUIET: Duration = Duration::from_millis(700);

async fn watching(factory: &impl Factory, name: &str) -> Option<(Arc<dyn StateStore>, String, WatchStream)> {
    let s = factory.store(StoreConfig::default()).await?;
    if !s.capabilities().watch {
        eprintln!("[purista-testkit] {name}: skipped, the store does not watch");
        return None;
    }
    let prefix = format!("{}:", unique(name));
    let events = s.watch(&prefix).await.expect("watch");
    Some((s, prefix, events))
}

/// The values of `keys` as the store holds them now (absent keys as `None`).
async fn read(store: &dyn StateStore, keys: &[String]) -> HashMap<String, Option<Value>> {
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut out = HashMap::with_capacity(keys.len());
    for chunk in names.chunks(100) {
        let map = store.get_state(chunk).await.expect("get_state");
        for (k, v) in map {
            out.insert(k, v.map(|j| j.decode::<Value>().expect("stored JSON")));
        }
    }
    out
}

/// Follows `events` until the model it builds equals the state of `keys`
/// read from `store` (read once, after the writers are done), and the
/// stream has been quiet for [`QUIET`]. Panics, naming the keys that
/// differ, when that does not happen within [`CONVERGE_LIMIT`]. Returns how
/// many errors the stream yielded.
async fn converge(store: &dyn StateStore, events: &mut WatchStream, keys: &[String], case: &str) -> usize {
    converge_by(store, events, keys, case, Follow::Values).await
}

/// How a consumer learns a key's value from an event.
#[derive(Clone, Copy, PartialEq)]
enum Follow {
    /// From the event (`watch`).
    Values,
    /// By reading the key it names (`invalidations`, as a cache does).
    Names,
}

async fn converge_by(
    store: &dyn StateStore,
    events: &mut WatchStream,
    keys: &[String],
    case: &str,
    follow: Follow,
) -> usize {
    let want = read(store, keys).await;
    let mut model: HashMap<String, Option<Value>> = keys.iter().map(|k| (k.clone(), None)).collect();
    let mut errors = 0;
    let deadline = Instant::now() + CONVERGE_LIMIT;
    let mut last_event = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_millis(100), events.next()).await {
            Ok(Some(Ok(e))) => {
                last_event = Instant::now();
                let value = match (follow, e.kind) {
                    (Follow::Names, _) => {
                        store.get_value(&e.key).await.expect("read").map(|j| j.decode().expect("stored JSON"))
                    }
                    (_, WatchKind::Set { value, .. }) => Some(value.decode::<Value>().expect("event JSON")),
                    (_, WatchKind::Changed) => panic!("{case}: watch reported a change without its kind"),
                    _ => None,
                };
                // Keys outside the set the case wrote would be a defect too.
                assert!(model.contains_key(&e.key), "{case}: event for a key never written: {:?}", e.key);
                model.insert(e.key, value);
            }
            Ok(Some(Err(e))) => {
                // Events before the error may be lost: start clean.
                eprintln!("[purista-testkit] {case}: the watcher said it lost events ({e}); reading afresh");
                errors += 1;
                last_event = Instant::now();
                model = read(store, keys).await;
            }
            Ok(None) => panic!("{case}: the watch stream ended"),
            Err(_) => {
                if model == want && last_event.elapsed() >= QUIET {
                    return errors;
                }
            }
        }
        if Instant::now() > deadline {
            let mut wrong: Vec<String> = keys
                .iter()
                .filter(|k| model.get(*k) != want.get(*k))
                .map(|k| format!("{k}: last event {:?}, store holds {:?}", model.get(k), want.get(k)))
                .collect();
            wrong.sort();
            wrong.truncate(10);
            panic!(
                "{case}: the watcher did not converge within {CONVERGE_LIMIT:?} ({errors} errors); e.g.\n  {}",
                if wrong.is_empty() {
                    "(the stream never went quiet)".to_owned()
                } else {
                    wrong.join("\n  ")
                }
            );
        }
    }
}

fn report(case: &str, errors: usize) {
    if errors > 0 {
        eprintln!("[purista-testkit] {case}: converged after {errors} error(s)");
    }
}

/// A transaction of 100 writes and removes over 40 watched keys, at once.
pub async fn watch_burst_transaction(factory: &impl Factory) {
    let Some((s, p, mut events)) = watching(factory, "watch-burst").await else { return };
    if !s.capabilities().transactions {
        return;
    }
    let keys: Vec<String> = (0..40).map(|i| format!("{p}{i}")).collect();
    let ops = (0..100)
        .map(|i| match i % 7 {
            3 => Op::remove(&keys[i % 40]),
            _ => Op::put(&keys[i % 40], Json::encode(&json!({"step": i})).unwrap()),
        })
        .collect();
    s.transaction(ops).await.expect("transaction");
    let errors = converge(&*s, &mut events, &keys, "watch_burst_transaction").await;
    report("watch_burst_transaction", errors);
    let _ = s.destroy().await;
}

/// 1,000 writes and removes from 8 tasks over 50 watched keys.
pub async fn watch_concurrent_writers(factory: &impl Factory) {
    let Some((s, p, mut events)) = watching(factory, "watch-writers").await else { return };
    let keys: Vec<String> = (0..50).map(|i| format!("{p}{i}")).collect();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (s, keys) = (Arc::clone(&s), keys.clone());
            tokio::spawn(async move {
                for j in 0..125 {
                    let key = &keys[(t * 7 + j * 3) % keys.len()];
                    if j % 10 == 9 {
                        s.remove_state(key).await.expect("remove");
                    } else {
                        s.set(key, &json!({"task": t, "n": j})).await.expect("set");
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer task");
    }
    let errors = converge(&*s, &mut events, &keys, "watch_concurrent_writers").await;
    report("watch_concurrent_writers", errors);
    let _ = s.destroy().await;
}

/// Writes from another instance (its own connection), interleaved with the
/// watching instance's own writes and removes on the same keys.
pub async fn watch_foreign_writers(factory: &impl Factory) {
    let Some((s, p, mut events)) = watching(factory, "watch-foreign").await else { return };
    let Some(other) = factory.store(StoreConfig::default()).await else { return };
    // Instances over separate data (a memory store per call) cannot see
    // each other: nothing to check then.
    let probe = format!("{p}probe");
    other.set(&probe, &1).await.expect("probe");
    let shared = s.get::<i32>(&probe).await.expect("probe read") == Some(1);
    other.remove_state(&probe).await.expect("probe remove");
    if !shared {
        eprintln!(
            "[purista-testkit] watch_foreign_writers: skipped, the factory's instances do not share data"
        );
        return;
    }
    let mut keys: Vec<String> = (0..20).map(|i| format!("{p}{i}")).collect();
    let writers: Vec<_> = [Arc::clone(&other), Arc::clone(&s)]
        .into_iter()
        .enumerate()
        .map(|(w, store)| {
            let keys = keys.clone();
            tokio::spawn(async move {
                for j in 0..200 {
                    let key = &keys[(j * (w + 1)) % keys.len()];
                    if (j + w) % 5 == 4 {
                        store.remove_state(key).await.expect("remove");
                    } else {
                        store.set(key, &json!({"writer": w, "n": j})).await.expect("set");
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer task");
    }
    keys.push(probe);
    let errors = converge(&*s, &mut events, &keys, "watch_foreign_writers").await;
    report("watch_foreign_writers", errors);
    let _ = other.destroy().await;
    let _ = s.destroy().await;
}

/// Keys that expire, keys written again after they expired (a plain write
/// over an expired key ends with its `Set`), keys whose TTL a plain write
/// removed in time.
pub async fn watch_expiry(factory: &impl Factory) {
    let Some((s, p, mut events)) = watching(factory, "watch-expiry").await else { return };
    let Some(granularity) = s.capabilities().ttl else { return };
    let ttl = granularity.max(Duration::from_secs(1));
    let keys: Vec<String> = (0..24).map(|i| format!("{p}{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        s.set_with_ttl(key, &json!({"ttl": i}), ttl).await.expect("set_with_ttl");
    }
    // A third keeps its value: a plain write drops the TTL before it runs out.
    for key in keys.iter().skip(2).step_by(3) {
        s.set(key, &json!("kept")).await.expect("set");
    }
    // Past the TTL without reading: Redis expires on access as well.
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    // Another third is written again over the expired value.
    for key in keys.iter().skip(1).step_by(3) {
        s.set(key, &json!("again")).await.expect("set");
    }
    // The rest must be gone before the final state is read.
    let deadline = Instant::now() + CONVERGE_LIMIT;
    let gone: Vec<String> = keys.iter().step_by(3).cloned().collect();
    while read(&*s, &gone).await.values().any(Option::is_some) {
        assert!(
            Instant::now() < deadline,
            "watch_expiry: keys still there {CONVERGE_LIMIT:?} after their TTL"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let errors = converge(&*s, &mut events, &keys, "watch_expiry").await;
    report("watch_expiry", errors);
    let _ = s.destroy().await;
}

/// Watch reports sets, removes and expiries under the prefix only.
pub async fn watch_prefix(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let p = unique("watch");
    let mut events = s.watch(&format!("{p}:")).await.expect("watch");
    let key = format!("{p}:k");
    s.set(&format!("{p}-outside"), &0).await.unwrap();
    s.set(&key, &json!({"v": 1})).await.unwrap();
    s.remove_state(&key).await.unwrap();
    let mut next = async || {
        tokio::time::timeout(WATCH_WAIT, events.next())
            .await
            .expect("watch event within the wait")
            .expect("stream open")
            .expect("event, not error")
    };
    let set = next().await;
    assert_eq!(set.key, key, "first event is the set, outside key ignored");
    match set.kind {
        WatchKind::Set { value, .. } => assert_eq!(value.decode::<Value>().unwrap(), json!({"v": 1})),
        other => panic!("expected Set, got {other:?}"),
    }
    let removed = next().await;
    assert_eq!((removed.key.as_str(), &removed.kind), (key.as_str(), &WatchKind::Removed));
    if s.capabilities().ttl.is_some() {
        let short = format!("{p}:short");
        s.set_with_ttl(&short, &1, Duration::from_secs(1)).await.unwrap();
        assert!(matches!(next().await.kind, WatchKind::Set { .. }));
        let expired = next().await;
        assert_eq!((expired.key.as_str(), &expired.kind), (short.as_str(), &WatchKind::Expired));
    }
}

/// Increments from another instance and this one, four tasks at once, on a
/// few counters: the watcher converges on their sums.
pub async fn watch_counters(factory: &impl Factory) {
    let Some((s, p, mut events)) = watching(factory, "watch-counters").await else { return };
    let Some(other) = factory.store(StoreConfig::default()).await else { return };
    let keys: Vec<String> = (0..3).map(|i| format!("{p}{i}")).collect();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = if w % 2 == 0 { Arc::clone(&other) } else { Arc::clone(&s) };
            let keys = keys.clone();
            tokio::spawn(async move {
                for j in 0..50 {
                    store.increment(&keys[(j + w) % keys.len()], 1, None).await.expect("increment");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    converge(&*s, &mut events, &keys, "watch_counters").await;
    for key in &keys {
        s.remove_state(key).await.unwrap();
    }
}

/// The feed a near cache follows (`invalidations`): four instances on their
/// own connections write, remove, increment and let keys expire, at once;
/// a follower that re-reads each key it is told about converges on the
/// store's final state.
pub async fn invalidations_converge(factory: &impl Factory) {
    let Some(s) = factory.store(StoreConfig::default()).await else { return };
    if !s.capabilities().watch {
        eprintln!("[purista-testkit] invalidations_converge: skipped, the store does not watch");
        return;
    }
    let p = format!("{}:", unique("invalidations"));
    let mut events = s.invalidations(&p).await.expect("invalidations");
    let keys: Vec<String> = (0..30).map(|i| format!("{p}{i}")).collect();
    let ttl = s.capabilities().ttl.map(|g| g.max(Duration::from_secs(1)));
    let counters = s.capabilities().counters;
    let mut writers = Vec::new();
    for w in 0..4 {
        let Some(store) = factory.store(StoreConfig::default()).await else { return };
        let keys = keys.clone();
        writers.push(tokio::spawn(async move {
            for j in 0..150 {
                let key = &keys[(w * 11 + j * 7) % keys.len()];
                match (j % 6, ttl) {
                    (5, _) => store.remove_state(key).await.expect("remove"),
                    (4, Some(ttl)) => {
                        store.set_with_ttl(key, &json!({"w": w, "ttl": j}), ttl).await.expect("set")
                    }
                    // Counters on keys of their own: a counter needs an integer.
                    (3, _) if counters => {
                        store.increment(&format!("{key}c"), 1, None).await.expect("incr");
                    }
                    _ => store.set(key, &json!({"w": w, "n": j})).await.expect("set"),
                }
            }
            store
        }));
    }
    let mut others = Vec::new();
    for w in writers {
        others.push(w.await.expect("writer task"));
    }
    let mut all = keys.clone();
    if counters {
        all.extend(keys.iter().map(|k| format!("{k}c")));
    }
    // Let the keys with a TTL run out (the store tells of expiries too).
    if let Some(ttl) = ttl {
        tokio::time::sleep(ttl + Duration::from_millis(300)).await;
        let _ = read(&*s, &all).await;
    }
    let errors = converge_by(&*s, &mut events, &all, "invalidations_converge", Follow::Names).await;
    report("invalidations_converge", errors);
    for o in others {
        let _ = o.destroy().await;
    }
    let _ = s.destroy().await;
}
