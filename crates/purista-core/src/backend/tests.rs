use std::sync::Arc;

use super::{rules::round_up, *};
use crate::{Error, ErrorKind, StateStore};

/// A backend whose every read fails naming the (prefixed) key it was given.
#[derive(Debug, Clone, Default)]
struct Failing(StoreConfig);

impl Backend for Failing {
    fn name(&self) -> &str {
        "Failing"
    }
    fn config(&self) -> &StoreConfig {
        &self.0
    }
    fn with_config(&self, config: StoreConfig) -> Self {
        Failing(config)
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities { etag: true, list: true, ..Capabilities::default() }
    }
    async fn get_state(&self, keys: &[&str]) -> Result<Vec<Option<Json>>> {
        Err(Error::new(ErrorKind::InvalidValue, "not JSON").with_key(keys[0]))
    }
    async fn get_entry(&self, key: &str) -> Result<Option<Entry>> {
        Err(Error::new(ErrorKind::InvalidValue, "not JSON").with_key(key))
    }
    async fn put(&self, _: &str, _: Json, _: &PutOptions) -> Result<Option<ETag>> {
        unreachable!("the empty etag is refused before the backend")
    }
    async fn remove(&self, _: &str, _: Option<&ETag>) -> Result<()> {
        unreachable!("the empty etag is refused before the backend")
    }
}

#[tokio::test]
async fn read_errors_name_the_callers_key() {
    let store: Arc<dyn StateStore> = Arc::new(Failing::default()).scoped("svc:1:");
    fn key(r: Result<()>) -> Option<String> {
        r.expect_err("fails").key().map(str::to_owned)
    }
    assert_eq!(key(store.get_value("k").await.map(drop)), Some("k".into()));
    assert_eq!(key(store.get_entry("k").await.map(drop)), Some("k".into()));
    assert_eq!(key(store.get_state(&["k"]).await.map(drop)), Some("k".into()));
}

#[tokio::test]
async fn an_empty_etag_never_reaches_the_backend() {
    let store: Arc<dyn StateStore> = Arc::new(Failing::default()).scoped("svc:1:");
    let empty = ETag::new("");
    let put = store.put("k", Json::from(serde_json::json!(1)), PutOptions::update(empty.clone())).await;
    let err = put.expect_err("conflict");
    assert_eq!((err.kind(), err.key()), (ErrorKind::Conflict, Some("k")));
    let err = store.remove("k", Some(&empty)).await.expect_err("conflict");
    assert_eq!((err.kind(), err.key()), (ErrorKind::Conflict, Some("k")));
}

#[test]
fn ttl_rounds_up_never_down() {
    let s = Duration::from_secs(1);
    assert_eq!(round_up(Duration::from_millis(1), s), s);
    assert_eq!(round_up(Duration::from_millis(1001), s), Duration::from_secs(2));
    assert_eq!(round_up(Duration::from_secs(3), s), Duration::from_secs(3));
    let ms = Duration::from_millis(1);
    assert_eq!(round_up(Duration::from_micros(1500), ms), Duration::from_millis(2));
    assert_eq!(round_up(Duration::from_micros(7), Duration::ZERO), Duration::from_micros(7));
}
