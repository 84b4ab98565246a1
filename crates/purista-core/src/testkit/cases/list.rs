//! Listing and watching keys by prefix: SPEC §3.8.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::{StateStoreExt, WatchKind};

use super::support::*;
use crate::testkit::{Factory, unique};

/// §3.8: list by prefix, exact prefix semantics, sorted.
pub async fn list_keys_by_prefix(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let p = unique("list");
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
