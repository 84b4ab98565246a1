//! Get, set and remove, by PURISTA's rules.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::{ErrorKind, Json, StateStoreExt};

use super::support::*;
use crate::testkit::{Factory, unique};

/// Values of every JSON shape read back JSON-equal.
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

/// Removing, including a key never set.
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

/// Bulk get; a missing key is missing, not an error; empty asks nothing.
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

/// Large values round-trip; values over the declared limit are `InvalidValue`.
pub async fn large_value(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let key = unique("large");
    let limit = s.capabilities().max_value_bytes.unwrap_or(usize::MAX);
    let size = (100 * 1024).min(limit.saturating_sub(64));
    let big: HashMap<String, String> = [("blob".to_string(), "x".repeat(size))].into();
    s.set(&key, &big).await.expect("large value");
    assert_eq!(s.get::<HashMap<String, String>>(&key).await.unwrap(), Some(big));
    // Building a value over a larger limit (Redis: 512 MiB) costs more than
    // the rule it checks, which is core's and the same for every store.
    if limit < 64 * 1024 * 1024 {
        let over = "y".repeat(limit + 1);
        expect_kind(s.set(&key, &over).await, ErrorKind::InvalidValue, "value over the limit");
    }
    s.remove_state(&key).await.unwrap();
}
