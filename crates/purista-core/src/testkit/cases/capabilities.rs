//! What a store does not claim fails as `Unsupported`, before anything is written.

use std::time::Duration;

use serde_json::json;

use super::support::*;
use crate::{
    ETag, ErrorKind, Json, Op, PutOptions,
    testkit::{Factory, unique},
};

/// Every capability the store leaves out answers `Unsupported` (501) and
/// writes nothing; the cases that need it are reported as skipped.
pub async fn unclaimed_capabilities_are_unsupported(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let caps = s.capabilities();
    let key = unique("unclaimed");
    let one = || Json::from(json!(1));
    let mut checked = 0;
    if !caps.etag {
        expect_kind(s.get_entry(&key).await, ErrorKind::Unsupported, "get_entry");
        expect_kind(
            s.put(&key, one(), PutOptions::update(ETag::new("1"))).await,
            ErrorKind::Unsupported,
            "update",
        );
        expect_kind(s.remove(&key, Some(&ETag::new("1"))).await, ErrorKind::Unsupported, "remove-if-etag");
        checked += 1;
    }
    if !caps.create_only {
        expect_kind(s.put(&key, one(), PutOptions::create()).await, ErrorKind::Unsupported, "create");
        checked += 1;
    }
    if caps.ttl.is_none() {
        let r = s.put(&key, one(), PutOptions::default().ttl(Duration::from_secs(5))).await;
        expect_kind(r, ErrorKind::Unsupported, "ttl");
        checked += 1;
    }
    if !caps.transactions {
        let e = expect_kind(
            s.transaction(vec![Op::put(&key, one())]).await,
            ErrorKind::Unsupported,
            "transaction",
        );
        assert_eq!(e.status(), 501);
        checked += 1;
    }
    if !caps.list {
        expect_kind(s.list_keys(&key).await, ErrorKind::Unsupported, "list_keys");
        checked += 1;
    }
    if !caps.watch {
        expect_kind(s.watch(&key).await.map(drop), ErrorKind::Unsupported, "watch");
        checked += 1;
    }
    if !caps.counters {
        expect_kind(s.increment(&key, 1, None).await, ErrorKind::Unsupported, "increment");
        checked += 1;
    }
    assert_eq!(raw(&*s, &key).await, None, "nothing written by refused calls");
    eprintln!("[purista-testkit] {}: {checked} unclaimed capabilities answer Unsupported", s.name());
}
