//! ETags, first-write and compare-and-swap.

use serde_json::json;

use crate::{ETag, ErrorKind, Json, PutOptions, StateStoreExt};

use super::support::*;
use crate::testkit::{Factory, unique};

/// Independent writes, one with a bad ETag: only that key is left untouched.
pub async fn bulk_writes_are_per_key(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
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

/// ETags.
pub async fn etag(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let key = unique("etag");
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

/// First-write.
pub async fn first_write(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let key = unique("first-write");
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

/// N tasks incrementing one counter with ETag retries end at exactly N × M.
pub async fn concurrent_counter(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let key = unique("counter");
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

/// An empty ETag never matches: it is a `Conflict`, not "no condition".
pub async fn empty_etag_is_a_conflict(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let empty = ETag::new("");
    let (missing, present) = (unique("empty-etag-missing"), unique("empty-etag-present"));
    s.set(&present, &"kept").await.unwrap();
    for key in [&missing, &present] {
        let put = s.put(key, Json::from(json!("clobbered")), PutOptions::update(empty.clone())).await;
        let err = expect_kind(put, ErrorKind::Conflict, "update with an empty etag");
        assert_eq!(err.key(), Some(key.as_str()), "conflict names the key");
        expect_kind(s.remove(key, Some(&empty)).await, ErrorKind::Conflict, "remove with an empty etag");
    }
    if s.capabilities().transactions {
        let ops =
            vec![crate::Op::put_with(&missing, Json::from(json!(1)), PutOptions::update(empty.clone()))];
        expect_kind(s.transaction(ops).await, ErrorKind::Conflict, "transaction with an empty etag");
    }
    assert_eq!(raw(&*s, &missing).await, None, "nothing written");
    assert_eq!(raw(&*s, &present).await, Some(json!("kept")), "value kept");
}
