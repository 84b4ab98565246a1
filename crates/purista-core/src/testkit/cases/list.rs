//! Listing keys by prefix.

use crate::StateStoreExt;

use super::support::*;
use crate::testkit::{Factory, unique};

/// List by prefix, exact prefix semantics, sorted.
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
