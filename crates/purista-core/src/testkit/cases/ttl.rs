//! Per-key TTL.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::{ErrorKind, Json, PutOptions, StateStoreExt};

use super::support::*;
use crate::testkit::{Factory, unique};

/// A zero TTL is rejected; without the capability, TTLs are Unsupported.
pub async fn ttl_rejects_bad_values(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let key = unique("ttl-bad");
    let put = |ttl| s.put(&key, Json::from(json!(1)), PutOptions::default().ttl(ttl));
    expect_kind(put(Duration::ZERO).await, ErrorKind::InvalidArgument, "zero ttl");
    expect_kind(put(Duration::from_secs(u64::MAX / 4)).await, ErrorKind::InvalidArgument, "absurd ttl");
    assert_eq!(raw(&*s, &key).await, None, "nothing written");
    // Below the granularity rounds up, never down to zero.
    put(Duration::from_nanos(1)).await.expect("sub-granularity ttl rounds up");
}

/// A 2 s TTL is gone within 3 s (and never listed once expired).
pub async fn ttl_expires(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
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

/// Expiry is reported about now + TTL; no TTL, no expiry.
pub async fn ttl_metadata(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let key = unique("ttl-meta");
    s.set(&key, &1).await.unwrap();
    assert_eq!(s.get_entry(&key).await.unwrap().unwrap().expires_at, None, "no ttl, no expiry");
    let ttl = Duration::from_secs(60);
    s.set_with_ttl(&key, &1, ttl).await.unwrap();
    let at = s.get_entry(&key).await.unwrap().unwrap().expires_at.expect("expiry reported");
    let want = SystemTime::now() + ttl;
    let off = at.duration_since(want).unwrap_or_else(|e| e.duration());
    assert!(off < Duration::from_secs(3), "expiry {at:?} is about now + ttl ({want:?})");
    // A declared truncation is what the store reports.
    if let Some(step) = s.capabilities().expiry_precision {
        let since = at.duration_since(UNIX_EPOCH).expect("an expiry after 1970");
        assert_eq!(
            since.as_nanos() % step.as_nanos(),
            0,
            "expiry {at:?} is truncated to {step:?} as declared"
        );
    }
}

/// Setting again without a TTL removes the TTL.
pub async fn ttl_removed_by_plain_set(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let key = unique("ttl-cleared");
    s.set_with_ttl(&key, &"short", Duration::from_secs(1)).await.unwrap();
    s.set(&key, &"forever").await.unwrap();
    if s.capabilities().etag {
        assert_eq!(s.get_entry(&key).await.unwrap().unwrap().expires_at, None, "ttl removed");
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(raw(&*s, &key).await, Some(json!("forever")), "survives the old deadline");
}
