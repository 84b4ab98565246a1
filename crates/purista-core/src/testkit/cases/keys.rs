//! Keys: edge characters and limits.

use serde_json::json;

use crate::{ErrorKind, Json, MAX_KEY_BYTES, StateStoreExt};

use super::support::*;
use crate::testkit::{Factory, unique};

/// Keys with separators, spaces, unicode and pattern characters round-trip
/// and never collide with each other. A key with a substring the store
/// declares reserved (Dapr's `||`) fails with `InvalidKey`, writing nothing.
pub async fn key_edge_cases(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let reserved = s.capabilities().reserved_in_keys;
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
            Err(e) if e.kind() == ErrorKind::InvalidKey && reserved.iter().any(|r| suffix.contains(r)) => {
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
    // A reserved substring fails on every path, reads included.
    for r in reserved {
        let key = format!("{p}x{r}y");
        let one = || Json::from(json!(1));
        let mut results = vec![
            s.get_value(&key).await.map(drop),
            s.get_state(&[&key]).await.map(drop),
            s.set_state(&key, one()).await,
            s.remove_state(&key).await,
        ];
        if s.capabilities().transactions {
            results.push(s.transaction(vec![crate::Op::put(&key, one())]).await);
        }
        for result in results {
            let err = expect_kind(result, ErrorKind::InvalidKey, "a reserved substring");
            assert_eq!(err.key(), Some(key.as_str()), "{err}");
        }
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
