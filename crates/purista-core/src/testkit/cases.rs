//! The cases: SPEC §3 (Dapr's state conformance list), PURISTA's behaviour,
//! key edge cases and concurrency.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::{Factory, unique};
use crate::{
    ETag, ErrorKind, GET_DISABLED, Json, MAX_KEY_BYTES, Op, PutOptions, REMOVE_DISABLED, Result,
    SET_DISABLED, StateStore, StateStoreExt, StoreConfig, WatchKind,
};

/// How long a watch may take to report a change.
const WATCH_WAIT: Duration = Duration::from_secs(10);

async fn store(factory: &impl Factory) -> Option<Arc<dyn StateStore>> {
    factory.store(StoreConfig::default()).await
}

#[track_caller]
fn expect_kind<T: std::fmt::Debug>(result: Result<T>, kind: ErrorKind, what: &str) -> crate::Error {
    match result {
        Err(e) if e.kind() == kind => e,
        other => panic!("{what}: expected {kind:?}, got {other:?}"),
    }
}

async fn raw(store: &dyn StateStore, key: &str) -> Option<Value> {
    let mut map = store.get_state(&[key]).await.expect("get_state");
    map.remove(key).expect("one entry per name").map(|j| j.decode::<Value>().expect("stored JSON"))
}

async fn etag_of(store: &dyn StateStore, key: &str) -> ETag {
    store.get_entry(key).await.expect("get_entry").expect("entry present").etag
}

/// §3.1: values of every JSON shape read back JSON-equal.
pub async fn round_trip(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let values = [
        json!(42),
        json!(-7.25),
        json!(true),
        json!("hello"),
        json!(""),
        json!("{\"inner\": [1, 2]}"),
        json!({"user": {"id": "u-1", "roles": ["a", "b"], "meta": {"n": 1.5, "ok": false}}}),
        json!([1, "two", {"three": 3}, [4]]),
        json!({}),
        json!([]),
        json!("ünïcødé ✓"),
    ];
    for (i, value) in values.iter().enumerate() {
        let key = unique(&format!("round-trip-{i}"));
        s.set_state(&key, Json::from(value)).await.expect("set_state");
        assert_eq!(raw(&*s, &key).await.as_ref(), Some(value), "value {i} read back");
        // And through the typed layer.
        assert_eq!(s.get::<Value>(&key).await.expect("get").as_ref(), Some(value));
    }
    // Overwrite replaces.
    let key = unique("overwrite");
    s.set(&key, &1).await.unwrap();
    s.set(&key, &2).await.unwrap();
    assert_eq!(s.get::<i32>(&key).await.unwrap(), Some(2));
}

/// A stored JSON `null` is a value, not a missing key.
pub async fn null_is_a_value(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let key = unique("null");
    s.set(&key, &Value::Null).await.unwrap();
    let map = s.get_state(&[&key]).await.unwrap();
    assert_eq!(map.get(&key), Some(&Some(Json::from(Value::Null))), "null stored as a value");
    assert_eq!(s.get::<Option<u32>>(&key).await.unwrap(), Some(None), "null decodes as Some(None)");
    assert_eq!(s.get::<Option<u32>>(&unique("absent")).await.unwrap(), None, "missing key is None");
}

/// A value that does not match the requested type is an error naming the key.
pub async fn decode_mismatch_names_the_key(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let key = unique("mismatch");
    s.set(&key, &json!({"count": "ten"})).await.unwrap();
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Counter {
        count: u64,
    }
    let err = expect_kind(s.get::<Counter>(&key).await, ErrorKind::InvalidValue, "typed get of wrong shape");
    assert_eq!(err.key(), Some(key.as_str()));
    assert_eq!(err.status(), 400);
    // The stored value is untouched.
    assert_eq!(raw(&*s, &key).await, Some(json!({"count": "ten"})));
}

/// §3.2: removing, including a key never set.
pub async fn remove(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let key = unique("remove");
    s.remove_state(&unique("never-set")).await.expect("removing a missing key is fine");
    s.set(&key, &"x").await.unwrap();
    s.remove_state(&key).await.unwrap();
    assert_eq!(raw(&*s, &key).await, None);
    s.remove_state(&key).await.expect("removing twice is fine");
}

/// PURISTA: one entry per requested name, missing names present as `None`.
pub async fn missing_names_are_none(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let (a, b) = (unique("missing-a"), unique("missing-b"));
    let map = s.get_state(&[&a, &b]).await.unwrap();
    assert_eq!(map.len(), 2);
    assert_eq!(map.get(&a), Some(&None));
    assert_eq!(map.get(&b), Some(&None));
}

/// §3.3: bulk get; a missing key is missing, not an error; empty asks nothing.
pub async fn get_state_many(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    assert!(s.get_state(&[]).await.unwrap().is_empty(), "empty request, empty answer");
    let keys: Vec<String> = (0..50).map(|i| unique(&format!("bulk-{i}"))).collect();
    for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 3 != 0) {
        s.set(k, &i).await.unwrap();
    }
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    let map = s.get_state(&names).await.unwrap();
    assert_eq!(map.len(), keys.len());
    for (i, k) in keys.iter().enumerate() {
        let want = (i % 3 != 0).then(|| Json::from(json!(i)));
        assert_eq!(map.get(k), Some(&want), "key {i}");
    }
    // Bulk delete, then all missing.
    for k in &keys {
        s.remove_state(k).await.unwrap();
    }
    assert!(s.get_state(&names).await.unwrap().values().all(Option::is_none));
}

/// §3.5 (bulk): independent writes, one with a bad ETag: only that key is left untouched.
pub async fn bulk_writes_are_per_key(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    if !s.capabilities().etag {
        return;
    }
    let keys: Vec<String> = (0..4).map(|i| unique(&format!("bulk-etag-{i}"))).collect();
    for k in &keys {
        s.set(k, &"v1").await.unwrap();
    }
    let mut writes = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let etag = if i == 2 { ETag::new("not-the-etag") } else { etag_of(&*s, k).await };
        let s = s.clone();
        let k = k.clone();
        writes.push(async move { s.put(&k, Json::from(json!("v2")), PutOptions::update(etag)).await });
    }
    let results = futures_util::future::join_all(writes).await;
    for (i, (k, r)) in keys.iter().zip(results).enumerate() {
        if i == 2 {
            expect_kind(r, ErrorKind::Conflict, "bad etag in a bulk write");
            assert_eq!(raw(&*s, k).await, Some(json!("v1")), "bad-etag key untouched");
        } else {
            r.expect("good etag");
            assert_eq!(raw(&*s, k).await, Some(json!("v2")));
        }
    }
    // Bulk delete with one bad ETag.
    let mut deletes = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let etag = if i == 1 { ETag::new("not-the-etag") } else { etag_of(&*s, k).await };
        let s = s.clone();
        let k = k.clone();
        deletes.push(async move { s.remove(&k, Some(&etag)).await });
    }
    let results = futures_util::future::join_all(deletes).await;
    for (i, (k, r)) in keys.iter().zip(results).enumerate() {
        if i == 1 {
            expect_kind(r, ErrorKind::Conflict, "bad etag in a bulk delete");
            assert!(raw(&*s, k).await.is_some(), "bad-etag key kept");
        } else {
            r.expect("good etag delete");
            assert_eq!(raw(&*s, k).await, None);
        }
    }
}

/// §3.5: ETags.
pub async fn etag(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let key = unique("etag");
    if !s.capabilities().etag {
        expect_kind(s.get_entry(&key).await, ErrorKind::Unsupported, "get_entry without etag capability");
        let r = s.put(&key, Json::from(json!(1)), PutOptions::update(ETag::new("1"))).await;
        expect_kind(r, ErrorKind::Unsupported, "update without etag capability");
        return;
    }
    assert_eq!(s.get_entry(&key).await.unwrap(), None, "missing key has no entry");
    s.set(&key, &"v1").await.unwrap();
    let first = s.get_entry(&key).await.unwrap().expect("entry");
    assert!(!first.etag.as_str().is_empty(), "etag is not empty");
    assert_eq!(first.value.decode::<String>().unwrap(), "v1");

    let wrong = ETag::new(format!("{}-wrong", first.etag));
    let err = expect_kind(
        s.put(&key, Json::from(json!("v2")), PutOptions::update(wrong.clone())).await,
        ErrorKind::Conflict,
        "set with a wrong etag",
    );
    assert_eq!(err.key(), Some(key.as_str()), "conflict names the key");
    assert_eq!(err.status(), 409);
    assert_eq!(raw(&*s, &key).await, Some(json!("v1")));

    s.put(&key, Json::from(json!("v2")), PutOptions::update(first.etag.clone())).await.expect("right etag");
    let second = etag_of(&*s, &key).await;
    assert_ne!(second, first.etag, "etag changes on write");
    expect_kind(
        s.put(&key, Json::from(json!("v3")), PutOptions::update(first.etag.clone())).await,
        ErrorKind::Conflict,
        "stale etag",
    );

    expect_kind(s.remove(&key, Some(&wrong)).await, ErrorKind::Conflict, "delete with a wrong etag");
    assert_eq!(raw(&*s, &key).await, Some(json!("v2")), "value kept after failed delete");
    s.remove(&key, Some(&second)).await.expect("delete with the right etag");
    assert_eq!(raw(&*s, &key).await, None);

    // An etag on a key that does not exist is a mismatch.
    expect_kind(
        s.put(&key, Json::from(json!("v4")), PutOptions::update(second.clone())).await,
        ErrorKind::Conflict,
        "update of a missing key",
    );
    expect_kind(s.remove(&key, Some(&second)).await, ErrorKind::Conflict, "etag delete of a missing key");
    assert_eq!(raw(&*s, &key).await, None);
}

/// §3.6: first-write.
pub async fn first_write(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let key = unique("first-write");
    if !s.capabilities().create_only {
        let r = s.put(&key, Json::from(json!(1)), PutOptions::create()).await;
        expect_kind(r, ErrorKind::Unsupported, "create without capability");
        return;
    }
    s.put(&key, Json::from(json!("first")), PutOptions::create()).await.expect("first create");
    let err = expect_kind(
        s.put(&key, Json::from(json!("second")), PutOptions::create()).await,
        ErrorKind::Conflict,
        "second create",
    );
    assert_eq!(err.key(), Some(key.as_str()));
    assert_eq!(raw(&*s, &key).await, Some(json!("first")));
    // After a remove, create works again.
    s.remove_state(&key).await.unwrap();
    s.put(&key, Json::from(json!("again")), PutOptions::create()).await.expect("create after remove");
    if s.capabilities().etag {
        let old = etag_of(&*s, &key).await;
        s.put(&key, Json::from(json!("next")), PutOptions::update(old.clone())).await.expect("once");
        expect_kind(
            s.put(&key, Json::from(json!("again")), PutOptions::update(old)).await,
            ErrorKind::Conflict,
            "repeat with the old etag",
        );
        assert_eq!(raw(&*s, &key).await, Some(json!("next")));
    }
}

/// §3.4: upserts then deletes in later groups, each visible after commit.
pub async fn transactions(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let keys: Vec<String> = (0..6).map(|i| unique(&format!("tx-{i}"))).collect();
    if !s.capabilities().transactions {
        let r = s.transaction(vec![Op::put(&keys[0], Json::from(json!(1)))]).await;
        expect_kind(r, ErrorKind::Unsupported, "transaction without capability");
        return;
    }
    s.transaction(Vec::new()).await.expect("empty transaction");
    let upserts = keys.iter().enumerate().map(|(i, k)| Op::put(k, Json::from(json!({ "i": i })))).collect();
    s.transaction(upserts).await.expect("upserts");
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(raw(&*s, k).await, Some(json!({ "i": i })));
    }
    let deletes = keys[..3].iter().map(Op::remove).chain([Op::remove(unique("tx-never-set"))]).collect();
    s.transaction(deletes).await.expect("deletes, one of a missing key");
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(raw(&*s, k).await.is_some(), i >= 3, "key {i} after deletes");
    }
}

/// §3.4: order holds inside one transaction.
pub async fn transaction_order(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    if !s.capabilities().transactions {
        return;
    }
    let (k1, k2, k3) = (unique("order-1"), unique("order-2"), unique("order-3"));
    s.set(&k1, &"one").await.unwrap();
    let ops = vec![
        Op::remove(&k1),
        Op::put(&k2, Json::from(json!("two"))),
        Op::remove(&k2),
        Op::put(&k3, Json::from(json!("three"))),
    ];
    s.transaction(ops).await.expect("ordered transaction");
    assert_eq!(raw(&*s, &k1).await, None);
    assert_eq!(raw(&*s, &k2).await, None);
    assert_eq!(raw(&*s, &k3).await, Some(json!("three")));
}

/// §3.4: all or nothing when one step's ETag does not match; the conflict names its key.
pub async fn transaction_all_or_nothing(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let caps = s.capabilities();
    if !(caps.transactions && caps.etag) {
        return;
    }
    let (a, b, c) = (unique("aon-a"), unique("aon-b"), unique("aon-c"));
    s.set(&a, &"a1").await.unwrap();
    s.set(&b, &"b1").await.unwrap();
    let good = etag_of(&*s, &a).await;
    let ops = vec![
        Op::put_with(&a, Json::from(json!("a2")), PutOptions::update(good.clone())),
        Op::put(&c, Json::from(json!("c2"))),
        Op::remove_if(&b, ETag::new("not-the-etag")),
    ];
    let err = expect_kind(s.transaction(ops).await, ErrorKind::Conflict, "transaction with a bad etag");
    assert_eq!(err.key(), Some(b.as_str()), "conflict names the key");
    assert_eq!(raw(&*s, &a).await, Some(json!("a1")), "nothing applied");
    assert_eq!(raw(&*s, &b).await, Some(json!("b1")));
    assert_eq!(raw(&*s, &c).await, None);
    if caps.create_only {
        let ops = vec![
            Op::put(&c, Json::from(json!("c3"))),
            Op::put_with(&a, Json::from(json!(0)), PutOptions::create()),
        ];
        let err = expect_kind(s.transaction(ops).await, ErrorKind::Conflict, "create-only in a transaction");
        assert_eq!(err.key(), Some(a.as_str()));
        assert_eq!(raw(&*s, &c).await, None, "nothing applied");
    }
    // The same transaction with the right etag goes through whole.
    let b_tag = etag_of(&*s, &b).await;
    let ops = vec![
        Op::put_with(&a, Json::from(json!("a2")), PutOptions::update(good)),
        Op::put(&c, Json::from(json!("c2"))),
        Op::remove_if(&b, b_tag),
    ];
    s.transaction(ops).await.expect("good transaction");
    assert_eq!(raw(&*s, &a).await, Some(json!("a2")));
    assert_eq!(raw(&*s, &b).await, None);
    assert_eq!(raw(&*s, &c).await, Some(json!("c2")));
}

/// §3.7: a zero TTL is rejected; without the capability, TTLs are Unsupported.
pub async fn ttl_rejects_bad_values(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let key = unique("ttl-bad");
    let put = |ttl| s.put(&key, Json::from(json!(1)), PutOptions::default().ttl(ttl));
    if s.capabilities().ttl.is_none() {
        expect_kind(put(Duration::from_secs(5)).await, ErrorKind::Unsupported, "ttl without capability");
        return;
    }
    expect_kind(put(Duration::ZERO).await, ErrorKind::InvalidArgument, "zero ttl");
    expect_kind(put(Duration::from_secs(u64::MAX / 4)).await, ErrorKind::InvalidArgument, "absurd ttl");
    assert_eq!(raw(&*s, &key).await, None, "nothing written");
    // Below the granularity rounds up, never down to zero.
    put(Duration::from_nanos(1)).await.expect("sub-granularity ttl rounds up");
}

/// §3.7: a 2 s TTL is gone within 3 s (and never listed once expired).
pub async fn ttl_expires(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    if s.capabilities().ttl.is_none() {
        return;
    }
    let prefix = unique("ttl-expire");
    let (key, keep) = (format!("{prefix}:gone"), format!("{prefix}:kept"));
    s.set_with_ttl(&key, &"soon gone", Duration::from_secs(2)).await.unwrap();
    s.set(&keep, &"stays").await.unwrap();
    assert_eq!(raw(&*s, &key).await, Some(json!("soon gone")), "present before expiry");
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(raw(&*s, &key).await, None, "gone after 3 s");
    if s.capabilities().list {
        assert_eq!(s.list_keys(&prefix).await.unwrap(), vec![keep.clone()], "expired key not listed");
    }
}

/// §3.7: expiry is reported about now + TTL; no TTL, no expiry.
pub async fn ttl_metadata(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let caps = s.capabilities();
    if caps.ttl.is_none() || !caps.etag {
        return;
    }
    let key = unique("ttl-meta");
    s.set(&key, &1).await.unwrap();
    assert_eq!(s.get_entry(&key).await.unwrap().unwrap().expires_at, None, "no ttl, no expiry");
    let ttl = Duration::from_secs(60);
    s.set_with_ttl(&key, &1, ttl).await.unwrap();
    let at = s.get_entry(&key).await.unwrap().unwrap().expires_at.expect("expiry reported");
    let want = SystemTime::now() + ttl;
    let off = at.duration_since(want).unwrap_or_else(|e| e.duration());
    assert!(off < Duration::from_secs(3), "expiry {at:?} is about now + ttl ({want:?})");
}

/// §3.7: setting again without a TTL removes the TTL.
pub async fn ttl_removed_by_plain_set(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    if s.capabilities().ttl.is_none() {
        return;
    }
    let key = unique("ttl-cleared");
    s.set_with_ttl(&key, &"short", Duration::from_secs(1)).await.unwrap();
    s.set(&key, &"forever").await.unwrap();
    if s.capabilities().etag {
        assert_eq!(s.get_entry(&key).await.unwrap().unwrap().expires_at, None, "ttl removed");
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(raw(&*s, &key).await, Some(json!("forever")), "survives the old deadline");
}

/// §3.8: list by prefix, exact prefix semantics, sorted.
pub async fn list_keys_by_prefix(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let p = unique("list");
    if !s.capabilities().list {
        expect_kind(s.list_keys(&p).await, ErrorKind::Unsupported, "list without capability");
        return;
    }
    // Glob and subject characters in the prefix must be taken literally.
    let names = ["a", "ab", "a:b", "a b", "a.b", "a*", "a?", "a[1]", "b", "ünï", "a>"];
    for n in names {
        s.set(&format!("{p}:{n}"), &n).await.unwrap();
    }
    s.set(&format!("{p}x"), &"outside").await.unwrap();
    let listed = |prefix: String| {
        let s = s.clone();
        async move { s.list_keys(&prefix).await.expect("list_keys") }
    };
    let mut all: Vec<String> = names.iter().map(|n| format!("{p}:{n}")).collect();
    all.sort();
    assert_eq!(listed(format!("{p}:")).await, all, "whole prefix");
    let mut a: Vec<String> = all.iter().filter(|k| k.starts_with(&format!("{p}:a"))).cloned().collect();
    a.sort();
    assert_eq!(listed(format!("{p}:a")).await, a, "prefix ending mid-token");
    assert_eq!(listed(format!("{p}:a*")).await, vec![format!("{p}:a*")], "glob taken literally");
    assert_eq!(listed(format!("{p}:a[1]")).await, vec![format!("{p}:a[1]")]);
    assert_eq!(listed(format!("{p}:a.")).await, vec![format!("{p}:a.b")]);
    assert_eq!(listed(format!("{p}:zzz")).await, Vec::<String>::new(), "no match");
    s.remove_state(&format!("{p}:b")).await.unwrap();
    assert!(!listed(format!("{p}:")).await.contains(&format!("{p}:b")), "removed key not listed");
}

/// Watch reports sets, removes and expiries under the prefix only.
pub async fn watch_prefix(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let p = unique("watch");
    if !s.capabilities().watch {
        expect_kind(s.watch(&p).await.map(drop), ErrorKind::Unsupported, "watch without capability");
        return;
    }
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

async fn disabled_store(
    factory: &impl Factory,
    config: StoreConfig,
) -> Option<(Arc<dyn StateStore>, Arc<dyn StateStore>)> {
    let open = factory.store(StoreConfig::default()).await?;
    let limited = factory.store(config).await?;
    Some((open, limited))
}

/// PURISTA: `enable_get = false` fails reads with 401 and its exact message.
pub async fn disabled_get(factory: &impl Factory) {
    let Some((open, s)) = disabled_store(factory, StoreConfig::default().enable_get(false)).await else {
        return;
    };
    let key = unique("no-get");
    s.set(&key, &1).await.expect("set still enabled");
    let err = expect_kind(s.get_state(&[&key]).await, ErrorKind::Disabled, "get disabled");
    assert_eq!((err.status(), err.to_string().as_str()), (401, GET_DISABLED));
    expect_kind(s.get::<i32>(&key).await, ErrorKind::Disabled, "typed get disabled");
    if s.capabilities().etag {
        expect_kind(s.get_entry(&key).await, ErrorKind::Disabled, "get_entry disabled");
    }
    if s.capabilities().list {
        expect_kind(s.list_keys(&key).await, ErrorKind::Disabled, "list disabled");
    }
    assert_eq!(raw(&*open, &key).await, Some(json!(1)));
    s.remove_state(&key).await.expect("remove still enabled");
}

/// PURISTA: `enable_set = false` fails writes with 401 and its exact message, writing nothing.
pub async fn disabled_set(factory: &impl Factory) {
    let Some((open, s)) = disabled_store(factory, StoreConfig::default().enable_set(false)).await else {
        return;
    };
    let key = unique("no-set");
    let err = expect_kind(s.set(&key, &1).await, ErrorKind::Disabled, "set disabled");
    assert_eq!((err.status(), err.to_string().as_str()), (401, SET_DISABLED));
    if s.capabilities().transactions {
        let r = s.transaction(vec![Op::put(&key, Json::from(json!(1)))]).await;
        expect_kind(r, ErrorKind::Disabled, "transaction write disabled");
    }
    assert_eq!(raw(&*open, &key).await, None, "nothing written");
    assert_eq!(s.get_state(&[&key]).await.unwrap().get(&key), Some(&None), "get still enabled");
}

/// PURISTA: `enable_remove = false` fails removes with 401 and its exact message, keeping the value.
pub async fn disabled_remove(factory: &impl Factory) {
    let Some((open, s)) = disabled_store(factory, StoreConfig::default().enable_remove(false)).await else {
        return;
    };
    let key = unique("no-remove");
    s.set(&key, &1).await.unwrap();
    let err = expect_kind(s.remove_state(&key).await, ErrorKind::Disabled, "remove disabled");
    assert_eq!((err.status(), err.to_string().as_str()), (401, REMOVE_DISABLED));
    if s.capabilities().transactions {
        expect_kind(s.transaction(vec![Op::remove(&key)]).await, ErrorKind::Disabled, "tx remove disabled");
    }
    assert_eq!(raw(&*open, &key).await, Some(json!(1)), "value kept");
    open.remove_state(&key).await.unwrap();
}

/// The config's key prefix applies to every operation and is stripped from keys handed back.
pub async fn key_prefix(factory: &impl Factory) {
    let prefix = format!("{}:", unique("prefix"));
    let Some((open, s)) = disabled_store(factory, StoreConfig::default().key_prefix(&prefix)).await else {
        return;
    };
    let caps = s.capabilities();
    s.set("session:1", &"inside").await.unwrap();
    assert_eq!(
        raw(&*open, &format!("{prefix}session:1")).await,
        Some(json!("inside")),
        "stored under prefix"
    );
    assert_eq!(raw(&*s, "session:1").await, Some(json!("inside")));
    let map = s.get_state(&["session:1", "session:2"]).await.unwrap();
    assert_eq!(map.keys().filter(|k| k.starts_with("session:")).count(), 2, "names handed back unprefixed");
    if caps.list {
        assert_eq!(s.list_keys("session:").await.unwrap(), vec!["session:1".to_string()]);
    }
    if caps.etag {
        let err = expect_kind(
            s.put("session:1", Json::from(json!(0)), PutOptions::update(ETag::new("bad"))).await,
            ErrorKind::Conflict,
            "prefixed conflict",
        );
        assert_eq!(err.key(), Some("session:1"), "conflict names the caller's key");
    }
    if caps.watch {
        let mut events = s.watch("session:").await.unwrap();
        s.set("session:3", &3).await.unwrap();
        let e = tokio::time::timeout(WATCH_WAIT, events.next()).await.expect("event").unwrap().unwrap();
        assert_eq!(e.key, "session:3", "watched key handed back unprefixed");
    }
    s.remove_state("session:1").await.unwrap();
    s.remove_state("session:3").await.unwrap();
    assert_eq!(raw(&*open, &format!("{prefix}session:1")).await, None);
}

/// `scoped` nests a prefix (what a namespaced service uses).
pub async fn scoped_store(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let ns = format!("{}:", unique("scope"));
    let scoped = s.clone().scoped(&ns);
    scoped.set("k", &"v").await.unwrap();
    assert_eq!(raw(&*s, &format!("{ns}k")).await, Some(json!("v")));
    assert_eq!(raw(&*scoped, "k").await, Some(json!("v")));
    if s.capabilities().list {
        assert_eq!(scoped.list_keys("").await.unwrap(), vec!["k".to_string()]);
    }
    scoped.remove_state("k").await.unwrap();
    assert_eq!(raw(&*s, &format!("{ns}k")).await, None);
}

/// Keys with separators, spaces, unicode and pattern characters round-trip
/// and never collide with each other. Only a backend that cannot hold `||`
/// (Dapr) may reject it, as `InvalidKey`, before writing anything.
pub async fn key_edge_cases(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let p = unique("keys");
    let suffixes = [
        "session:abc",
        "a b",
        "tab\there",
        "ключ",
        "🔑",
        "..",
        ".",
        "a.",
        ".a",
        "a..b",
        "a||b",
        "*",
        ">",
        "a.*",
        "a.>",
        "a/b",
        "a\\b",
        "a_b",
        "a-b",
        "a=b",
        "%41",
        "~",
        "a\u{0}b",
        "$KV",
        "\"quoted\"",
        "{tag}",
    ];
    let mut stored = Vec::new();
    for (i, suffix) in suffixes.iter().enumerate() {
        let key = format!("{p}{suffix}");
        match s.set(&key, &i).await {
            Ok(()) => stored.push((key, i)),
            Err(e) if e.kind() == ErrorKind::InvalidKey && suffix.contains("||") => {
                assert_eq!(raw(&*s, &format!("{p}a")).await, None, "nothing written");
            }
            Err(e) => panic!("key {key:?} rejected: {e}"),
        }
    }
    for (key, i) in &stored {
        assert_eq!(raw(&*s, key).await, Some(json!(i)), "key {key:?} reads its own value");
    }
    let names: Vec<&str> = stored.iter().map(|(k, _)| k.as_str()).collect();
    let map = s.get_state(&names).await.unwrap();
    for (key, i) in &stored {
        assert_eq!(map.get(key), Some(&Some(Json::from(json!(i)))), "bulk read of {key:?}");
    }
    if s.capabilities().list {
        let mut want: Vec<String> = names.iter().map(|k| k.to_string()).collect();
        want.sort();
        assert_eq!(s.list_keys(&p).await.unwrap(), want, "listing edge keys");
    }
    for (key, _) in &stored {
        s.remove_state(key).await.unwrap();
    }
}

/// Keys of 1024 bytes work; empty and longer keys are `InvalidKey` for every operation.
pub async fn key_limits(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let base = unique("long");
    let long = format!("{base}{}", "k".repeat(MAX_KEY_BYTES - base.len()));
    let long_unicode = {
        let mut k = base.clone();
        while k.len() + 'ß'.len_utf8() <= MAX_KEY_BYTES {
            k.push('ß');
        }
        k
    };
    for key in [&long, &long_unicode] {
        assert!(key.len() <= MAX_KEY_BYTES);
        s.set(key, &"long").await.expect("key at the limit");
        assert_eq!(raw(&*s, key).await, Some(json!("long")));
        s.remove_state(key).await.unwrap();
    }
    let too_long = "k".repeat(MAX_KEY_BYTES + 1);
    for key in ["", too_long.as_str()] {
        expect_kind(s.set(key, &1).await, ErrorKind::InvalidKey, "set");
        expect_kind(s.get_state(&[key]).await, ErrorKind::InvalidKey, "get_state");
        expect_kind(s.remove_state(key).await, ErrorKind::InvalidKey, "remove");
        let err = expect_kind(s.get::<i32>(key).await, ErrorKind::InvalidKey, "typed get");
        assert_eq!(err.status(), 400);
    }
}

/// N tasks incrementing one counter with ETag retries end at exactly N × M.
pub async fn concurrent_counter(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let key = unique("counter");
    let caps = s.capabilities();
    if !(caps.etag && caps.create_only) {
        expect_kind(
            s.update(&key, None, |n: Option<u64>| n.unwrap_or(0) + 1).await,
            ErrorKind::Unsupported,
            "update",
        );
        return;
    }
    const TASKS: u64 = 8;
    const EACH: u64 = 15;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (s, key) = (s.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..EACH {
                s.update(&key, None, |n: Option<u64>| n.unwrap_or(0) + 1).await.expect("update");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(s.get::<u64>(&key).await.unwrap(), Some(TASKS * EACH));
}

/// Large values round-trip; values over the declared limit are `InvalidValue`.
pub async fn large_value(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let key = unique("large");
    let limit = s.capabilities().max_value_bytes.unwrap_or(usize::MAX);
    let size = (100 * 1024).min(limit.saturating_sub(64));
    let big: HashMap<String, String> = [("blob".to_string(), "x".repeat(size))].into();
    s.set(&key, &big).await.expect("large value");
    assert_eq!(s.get::<HashMap<String, String>>(&key).await.unwrap(), Some(big));
    if limit < 64 * 1024 * 1024 {
        let over = "y".repeat(limit + 1);
        expect_kind(s.set(&key, &over).await, ErrorKind::InvalidValue, "value over the limit");
    }
    s.remove_state(&key).await.unwrap();
}
