//! PURISTA's base config: enable flags, key prefix, scoped stores.

use futures_util::StreamExt;
use serde_json::json;

use crate::{
    ETag, ErrorKind, GET_DISABLED, Json, Op, PutOptions, REMOVE_DISABLED, SET_DISABLED, StateStoreExt,
    StoreConfig,
};

use super::support::*;
use crate::testkit::{Factory, unique};

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
