//! What the cases share: the store under test, error and value checks.

use std::{sync::Arc, time::Duration};

use serde_json::Value;

use crate::{ETag, ErrorKind, Result, StateStore, StoreConfig, testkit::Factory};

/// How long a watch may take to report a change.
pub(super) const WATCH_WAIT: Duration = Duration::from_secs(10);

pub(super) async fn store(factory: &impl Factory) -> Option<Arc<dyn StateStore>> {
    factory.store(StoreConfig::default()).await
}

#[track_caller]
pub(super) fn expect_kind<T: std::fmt::Debug>(
    result: Result<T>,
    kind: ErrorKind,
    what: &str,
) -> crate::Error {
    match result {
        Err(e) if e.kind() == kind => e,
        other => panic!("{what}: expected {kind:?}, got {other:?}"),
    }
}

pub(super) async fn raw(store: &dyn StateStore, key: &str) -> Option<Value> {
    let mut map = store.get_state(&[key]).await.expect("get_state");
    map.remove(key).expect("one entry per name").map(|j| j.decode::<Value>().expect("stored JSON"))
}

pub(super) async fn etag_of(store: &dyn StateStore, key: &str) -> ETag {
    store.get_entry(key).await.expect("get_entry").expect("entry present").etag
}

pub(super) async fn disabled_store(
    factory: &impl Factory,
    config: StoreConfig,
) -> Option<(Arc<dyn StateStore>, Arc<dyn StateStore>)> {
    let open = factory.store(StoreConfig::default()).await?;
    let limited = factory.store(config).await?;
    Some((open, limited))
}
