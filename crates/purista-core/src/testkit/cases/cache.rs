//! The near cache's own rules (stores that declare `stale_reads`): each
//! instance is its own cache over its own connection.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use serde_json::{Value, json};

use super::support::*;
use crate::{
    ErrorKind, Json, Op, PutOptions, StateStore, StateStoreExt,
    testkit::{Factory, unique},
};

/// The declared bound of a store these cases run on.
fn bound(s: &dyn StateStore) -> Duration {
    s.capabilities().stale_reads.expect("the case runs only on stores that declare stale_reads")
}

/// Each kind of write through an instance is read back at once by that
/// instance, even right after it cached the old answer; scoped views share it.
pub async fn cache_own_writes_at_once(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let caps = s.capabilities();
    let key = unique("own");
    for _ in 0..2 {
        assert_eq!(s.get::<i32>(&key).await.unwrap(), None, "missing, then cached missing");
    }
    s.set(&key, &1).await.unwrap();
    assert_eq!(s.get::<i32>(&key).await.unwrap(), Some(1), "set seen at once");
    assert_eq!(s.get::<i32>(&key).await.unwrap(), Some(1), "and again (a hit)");
    if caps.ttl.is_some() {
        s.set_with_ttl(&key, &2, Duration::from_secs(60)).await.unwrap();
        assert_eq!(s.get::<i32>(&key).await.unwrap(), Some(2), "put with a TTL seen at once");
    }
    if caps.etag {
        let etag = s.get_entry(&key).await.unwrap().expect("entry").etag;
        s.put(&key, Json::from(json!(3)), PutOptions::update(etag)).await.unwrap();
        assert_eq!(s.get::<i32>(&key).await.unwrap(), Some(3), "compare-and-swap seen at once");
    }
    if caps.transactions {
        s.transaction(vec![Op::put(&key, Json::from(json!(4)))]).await.unwrap();
        assert_eq!(s.get::<i32>(&key).await.unwrap(), Some(4), "transaction seen at once");
    }
    let map = s.get_state(&[&key]).await.unwrap();
    assert!(map[&key].is_some(), "get_state agrees");
    s.remove_state(&key).await.unwrap();
    assert_eq!(s.get::<i32>(&key).await.unwrap(), None, "remove seen at once");
    assert_eq!(s.get_state(&[&key]).await.unwrap()[&key], None, "by get_state too");
    if caps.counters {
        let counter = unique("own-counter");
        assert_eq!(s.get::<i64>(&counter).await.unwrap(), None);
        s.increment(&counter, 5, None).await.unwrap();
        assert_eq!(s.get::<i64>(&counter).await.unwrap(), Some(5), "increment seen at once");
        s.remove_state(&counter).await.unwrap();
    }
    // A scoped view shares the cache of the store it comes from.
    let ns = format!("{}:", unique("own-scope"));
    let view = s.clone().scoped(&ns);
    let full = format!("{ns}k");
    assert_eq!(s.get::<i32>(&full).await.unwrap(), None);
    assert_eq!(view.get::<i32>("k").await.unwrap(), None);
    view.set("k", &7).await.unwrap();
    assert_eq!(s.get::<i32>(&full).await.unwrap(), Some(7), "a view's write seen through its parent");
    s.set(&full, &8).await.unwrap();
    assert_eq!(view.get::<i32>("k").await.unwrap(), Some(8), "the parent's write seen through the view");
    view.remove_state("k").await.unwrap();
    assert_eq!(s.get::<i32>(&full).await.unwrap(), None);
}

/// Reads `key` through `store` until it reads `want`, failing once `bound`
/// has passed; how long that took. After another instance's write, this is
/// how long its news took to reach `store`'s cache.
pub async fn read_within<T>(store: &dyn StateStore, key: &str, want: Option<T>, bound: Duration) -> Duration
where
    T: serde::de::DeserializeOwned + Send + PartialEq + std::fmt::Debug,
{
    let start = Instant::now();
    loop {
        let seen = store.get::<T>(key).await.unwrap();
        if seen == want {
            return start.elapsed();
        }
        let waited = start.elapsed();
        assert!(waited <= bound, "{key}: still read {seen:?} {waited:?} after the write, bound {bound:?}");
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

/// After another instance's write of `new` over `old` was acknowledged at
/// `acknowledged`, reads `key` through `store` until it reads `new` or
/// `patience` has passed (errors are read past: a server may be down). How
/// long after the acknowledgement it read `new`, if it did, and how many
/// reads begun `bound` after the acknowledgement still answered `old`: for
/// a cache declaring `bound`, each of those is a violation.
pub async fn reads_after_a_write<T>(
    store: &dyn StateStore,
    key: &str,
    (old, new): (&T, &T),
    acknowledged: Instant,
    bound: Duration,
    patience: Duration,
) -> (Option<Duration>, usize)
where
    T: serde::de::DeserializeOwned + Send + PartialEq,
{
    let mut stale = 0;
    while acknowledged.elapsed() < patience {
        let started = Instant::now();
        match store.get::<T>(key).await {
            Ok(Some(v)) if v == *new => return (Some(acknowledged.elapsed()), stale),
            Ok(Some(v)) if v == *old && started > acknowledged + bound => stale += 1,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (None, stale)
}

/// Another instance's write (and remove) is read within the declared bound,
/// even by an instance that cached the old answer. Prints the delays seen.
pub async fn cache_foreign_writes_within_bound(factory: &impl Factory) {
    let Some(reader) = store(factory).await else { return };
    let writer = store(factory).await.expect("a second instance");
    let bound = bound(&*reader);
    let key = unique("foreign");
    let mut delays = Vec::new();
    for round in 0..40_i64 {
        let want = (round % 4 != 3).then_some(round);
        // Cache the answer before the write.
        reader.get::<i64>(&key).await.unwrap();
        reader.get::<i64>(&key).await.unwrap();
        match want {
            Some(v) => writer.set(&key, &v).await.unwrap(),
            None => writer.remove_state(&key).await.unwrap(),
        }
        let waited = read_within(&*reader, &key, want, bound).await;
        delays.push(waited);
    }
    delays.sort();
    let at = |q: f64| delays[((delays.len() - 1) as f64 * q) as usize];
    eprintln!(
        "[purista-testkit] {}: a foreign write read after p50 {:?}, p99 {:?}, max {:?} (bound {bound:?})",
        reader.name(),
        at(0.5),
        at(0.99),
        delays[delays.len() - 1]
    );
    writer.remove_state(&key).await.unwrap();
}

/// `get_entry`, compare-and-swap, counters and transactions never answer
/// from the cache: right after another instance's write they see it.
pub async fn cache_entry_and_cas_never_stale(factory: &impl Factory) {
    let Some(a) = store(factory).await else { return };
    let b = store(factory).await.expect("a second instance");
    let caps = a.capabilities();
    let key = unique("fresh");
    a.set(&key, &0).await.unwrap();
    assert_eq!(a.get::<i32>(&key).await.unwrap(), Some(0), "cached on a");
    b.set(&key, &1).await.unwrap();
    let entry = a.get_entry(&key).await.unwrap().expect("entry");
    assert_eq!(entry.value.decode::<i32>().unwrap(), 1, "get_entry reads the store");
    let old = b.get_entry(&key).await.unwrap().expect("entry").etag;
    b.set(&key, &2).await.unwrap();
    let stale = a.put(&key, Json::from(json!(3)), PutOptions::update(old)).await;
    expect_kind(stale, ErrorKind::Conflict, "a compare-and-swap on an old ETag");
    let current = a.get_entry(&key).await.unwrap().expect("entry").etag;
    a.put(&key, Json::from(json!(3)), PutOptions::update(current)).await.expect("CAS on the current ETag");
    if caps.transactions {
        let current = b.get_entry(&key).await.unwrap().expect("entry").etag;
        b.set(&key, &4).await.unwrap();
        let r =
            a.transaction(vec![Op::put_with(&key, Json::from(json!(5)), PutOptions::update(current))]).await;
        assert!(r.is_err(), "a transaction on an old ETag fails: {r:?}");
    }
    if caps.counters {
        let counter = unique("fresh-counter");
        a.increment(&counter, 1, None).await.unwrap();
        assert_eq!(a.get::<i64>(&counter).await.unwrap(), Some(1), "cached on a");
        b.increment(&counter, 1, None).await.unwrap();
        assert_eq!(a.increment(&counter, 1, None).await.unwrap(), 3, "increment counts every write");
        a.remove_state(&counter).await.unwrap();
    }
    a.remove_state(&key).await.unwrap();
}

/// A cached entry never outlives its key: once the store no longer has the
/// key, no instance serves it, though nothing was written.
pub async fn cache_ttl_honoured(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let other = store(factory).await.expect("a second instance");
    let key = unique("cache-ttl");
    let ttl = Duration::from_secs(2);
    s.set_with_ttl(&key, &"short", ttl).await.unwrap();
    let deadline = Instant::now() + ttl + Duration::from_secs(3);
    for reader in [&s, &other] {
        assert_eq!(
            reader.get::<String>(&key).await.unwrap().as_deref(),
            Some("short"),
            "cached before expiry"
        );
    }
    loop {
        // Ask the store first (never cached): once it has no key, the key
        // cannot come back, so a cached answer must be missing too.
        let gone = if s.capabilities().etag {
            s.get_entry(&key).await.unwrap().is_none()
        } else {
            Instant::now() >= deadline
        };
        let cached = [s.get::<String>(&key).await.unwrap(), other.get::<String>(&key).await.unwrap()];
        if gone {
            assert_eq!(cached, [None, None], "an entry outlived its key's expiry");
            assert_eq!(s.get_state(&[&key]).await.unwrap()[&key], None, "get_state too");
            break;
        }
        assert!(Instant::now() < deadline, "the key never expired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Four instances write the same keys at once while all of them read;
/// once the writers stop and the declared bound passes, every instance reads
/// the final values.
pub async fn cache_writers_converge(factory: &impl Factory) {
    const INSTANCES: usize = 4;
    const KEYS: usize = 8;
    let Some(first) = store(factory).await else { return };
    let mut all = vec![first];
    for _ in 1..INSTANCES {
        all.push(store(factory).await.expect("another instance"));
    }
    let bound = bound(&*all[0]);
    let base = unique("converge");
    let keys: Vec<String> = (0..KEYS).map(|k| format!("{base}-{k}")).collect();
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    let writing = AtomicBool::new(true);
    let writers = all.iter().enumerate().map(|(i, s)| {
        let keys = &keys;
        async move {
            for n in 0..150_usize {
                let key = &keys[(i * 7 + n * 3) % KEYS];
                if n % 10 == 9 {
                    s.remove_state(key).await.expect("remove");
                } else {
                    s.set(key, &json!([i, n])).await.expect("set");
                }
            }
        }
    });
    let readers = all.iter().map(|s| {
        let (names, writing) = (&names, &writing);
        async move {
            let mut n = 0;
            while writing.load(Ordering::SeqCst) {
                s.get::<Value>(names[n % KEYS]).await.expect("get");
                if n % 4 == 0 {
                    s.get_state(names).await.expect("get_state");
                }
                n += 1;
                tokio::task::yield_now().await;
            }
        }
    });
    let writers = async {
        join_all(writers).await;
        writing.store(false, Ordering::SeqCst);
    };
    futures_util::future::join(writers, join_all(readers)).await;
    tokio::time::sleep(bound).await;
    // The truth, from an instance that has cached nothing.
    let judge = store(factory).await.expect("a judging instance");
    let truth = judge.get_state(&names).await.unwrap();
    for (i, s) in all.iter().enumerate() {
        for name in &names {
            let got = s.get_value(name).await.unwrap();
            assert_eq!(got, truth[*name], "instance {i} reads the final value of {name}");
        }
        assert_eq!(s.get_state(&names).await.unwrap(), truth, "instance {i}'s get_state");
    }
    for name in &names {
        judge.remove_state(name).await.unwrap();
    }
}
