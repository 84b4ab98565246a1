//! A client that backs off after a failure, as Jepsen's clients do: a store
//! wrapper that holds back an `Unavailable`, `Timeout` or `Backend` error for
//! a moment before returning it. While a server is down or electing a
//! leader, calls fail at once; without the pause a client would pile up
//! thousands of operations of unknown outcome, each of which the
//! linearizability search must consider applied at any later point. The
//! pause only lengthens a failed call; what it answered is unchanged.

#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use purista_core::{
    Call, Capabilities, ETag, Entry, ErrorKind, Json, Op, PutOptions, Result, StateMap, StateStore,
    WatchStream,
};

/// How long a failed call is held back.
pub const BACKOFF: Duration = Duration::from_millis(250);

/// `inner`, pausing [`BACKOFF`] after each call that failed with an
/// outcome the checks count as unknown.
#[derive(Debug)]
pub struct Paced(pub Arc<dyn StateStore>);

impl Paced {
    /// Wraps `store`.
    pub fn wrap(store: Arc<dyn StateStore>) -> Arc<dyn StateStore> {
        Arc::new(Paced(store))
    }
}

async fn paced<T>(result: Result<T>) -> Result<T> {
    if let Err(e) = &result
        && matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Backend)
    {
        tokio::time::sleep(BACKOFF).await;
    }
    result
}

#[async_trait]
impl StateStore for Paced {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn get_state(&self, names: &[&str]) -> Result<StateMap> {
        paced(self.0.get_state(names).await).await
    }
    fn get_value<'a>(&'a self, name: &'a str) -> Call<'a, Option<Json>> {
        Call::boxed(async move { paced(self.0.get_value(name).await).await })
    }
    fn set_state<'a>(&'a self, name: &'a str, value: Json) -> Call<'a, ()> {
        Call::boxed(async move { paced(self.0.set_state(name, value).await).await })
    }
    fn remove_state<'a>(&'a self, name: &'a str) -> Call<'a, ()> {
        Call::boxed(async move { paced(self.0.remove_state(name).await).await })
    }
    async fn get_entry(&self, name: &str) -> Result<Option<Entry>> {
        paced(self.0.get_entry(name).await).await
    }
    async fn put(&self, name: &str, value: Json, options: PutOptions) -> Result<Option<ETag>> {
        paced(self.0.put(name, value, options).await).await
    }
    async fn remove(&self, name: &str, etag: Option<&ETag>) -> Result<()> {
        paced(self.0.remove(name, etag).await).await
    }
    async fn transaction(&self, ops: Vec<Op>) -> Result<()> {
        paced(self.0.transaction(ops).await).await
    }
    async fn increment(&self, name: &str, delta: i64, ttl: Option<std::time::Duration>) -> Result<i64> {
        paced(self.0.increment(name, delta, ttl).await).await
    }
    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        paced(self.0.list_keys(prefix).await).await
    }
    async fn watch(&self, prefix: &str) -> Result<WatchStream> {
        self.0.watch(prefix).await
    }
    async fn invalidations(&self, prefix: &str) -> Result<WatchStream> {
        self.0.invalidations(prefix).await
    }
    fn scoped(self: Arc<Self>, prefix: &str) -> Arc<dyn StateStore> {
        Paced::wrap(self.0.clone().scoped(prefix))
    }
    async fn destroy(&self) -> Result<()> {
        self.0.destroy().await
    }
}
