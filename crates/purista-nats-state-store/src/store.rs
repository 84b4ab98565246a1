//! The store: a handle on one connection and bucket, and the [`Backend`]
//! hooks, each handing over to the module that does the work.

use std::{fmt, sync::Arc, time::Duration};

use async_nats::{Client, jetstream, jetstream::kv};
use purista_core::{
    Capabilities, Capability, ETag, Entry, Json, Op, PutOptions, Result, StoreConfig, WatchStream,
    backend::{Backend, Combiner, Handle},
};

use crate::{
    NatsStateStoreBuilder, RemoveMode, bucket::Missing, error, key::nats_key, list, reads, transaction, write,
};

/// A request's bound when the connection has no request timeout: listings
/// and batched gets wait for several messages, so they never wait forever
/// (async-nats's default).
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A PURISTA state store on a NATS JetStream key-value bucket.
///
/// Cheap to clone. Clones (and [`scoped`](purista_core::StateStore::scoped)
/// stores) are handles on one connection: [`destroy`](purista_core::StateStore::destroy)
/// releases the handle it is called on, and the connection closes when the
/// last handle is destroyed or dropped. Build it with [`NatsStateStore::builder`].
///
/// Why a capability is missing on this server or bucket (TTL before
/// nats-server 2.11, transactions before 2.12 or without atomic publish) is
/// in the `Unsupported` error, and from
/// [`Backend::unsupported_reason`].
#[derive(Clone)]
pub struct NatsStateStore {
    pub(crate) inner: Arc<Inner>,
    pub(crate) config: StoreConfig,
    /// This handle's share of the connection (which closes by itself once
    /// async-nats's last client is gone).
    pub(crate) handle: Handle,
}

/// What all handles share.
pub(crate) struct Inner {
    pub client: Client,
    /// Whether the store opened the connection (and closes it on destroy).
    pub owned: bool,
    /// Revisions kept per key (`max_messages_per_subject`; below 1: unlimited).
    pub history: i64,
    /// How long the server keeps expiry markers (it raises shorter TTLs to
    /// this on buckets with history).
    pub marker_ttl: Option<Duration>,
    pub js: jetstream::Context,
    pub kv: kv::Store,
    /// `$KV.<bucket>.` as stored.
    pub read_prefix: String,
    /// Where writes go (differs from `read_prefix` for mirrors and domains).
    pub publish_prefix: String,
    /// How reads reach the stream (see `reads`).
    pub reads: reads::ReadPath,
    /// Where `get_state` sends batched direct gets; `None`: key by key.
    pub batch_get: Option<String>,
    /// Concurrent increments of one key, sent as one (compare-and-swap
    /// writes of one instance no longer conflict with each other).
    pub counters: Combiner,
    pub bucket: String,
    pub remove_mode: RemoveMode,
    pub caps: Capabilities,
    pub missing: Missing,
}

impl Inner {
    /// How long one request may wait for the server.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.client.timeout().unwrap_or(DEFAULT_REQUEST_TIMEOUT)
    }
}

impl fmt::Debug for NatsStateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("NatsStateStore")
            .field("bucket", &i.bucket)
            .field("config", &self.config)
            .field("remove_mode", &i.remove_mode)
            .field("capabilities", &i.caps)
            .field("reads", &i.reads)
            .field("batched_get", &i.batch_get.is_some())
            .finish()
    }
}

impl NatsStateStore {
    /// A builder: servers, credentials, TLS, bucket and its settings.
    pub fn builder() -> NatsStateStoreBuilder {
        NatsStateStoreBuilder::default()
    }

    /// Connects to `url` with defaults (bucket [`DEFAULT_BUCKET`](crate::DEFAULT_BUCKET)).
    pub async fn connect(url: impl Into<String>) -> Result<Self> {
        Self::builder().server(url).connect().await
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    /// Another handle on the same connection and bucket, with `config`
    /// (its own enable flags and key prefix).
    pub fn with_config(&self, config: StoreConfig) -> Self {
        NatsStateStore { inner: self.inner.clone(), config, handle: self.handle.another() }
    }

    /// The connection (shared with the store).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The bucket handle, for what the contract does not cover.
    pub fn kv(&self) -> &kv::Store {
        &self.inner.kv
    }
}

// The hottest calls without the boxed future of `dyn StateStore`.
purista_core::direct_calls!(NatsStateStore);

impl Backend for NatsStateStore {
    fn name(&self) -> &str {
        "NatsStateStore"
    }

    fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn with_config(&self, config: StoreConfig) -> Self {
        NatsStateStore::with_config(self, config)
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.caps
    }

    fn combiner(&self) -> Option<&Combiner> {
        Some(&self.inner.counters)
    }

    fn detached(&self) -> Self {
        NatsStateStore { inner: self.inner.clone(), config: self.config.clone(), handle: Handle::detached() }
    }

    fn unsupported_reason(&self, capability: Capability) -> Option<String> {
        self.inner.missing.reason(capability).map(str::to_owned)
    }

    async fn get_state(&self, keys: &[&str]) -> Result<Vec<Option<Json>>> {
        reads::get_state(self, keys).await
    }

    async fn get_value(&self, key: &str) -> Result<Option<Json>> {
        Ok(self.current(key, &nats_key(key)?).await?.into_value())
    }

    async fn get_entry(&self, key: &str) -> Result<Option<Entry>> {
        Ok(self.current(key, &nats_key(key)?).await?.into_entry())
    }

    async fn put(&self, key: &str, value: Json, options: &PutOptions) -> Result<Option<ETag>> {
        write::put(self, key, value, options).await
    }

    async fn remove(&self, key: &str, etag: Option<&ETag>) -> Result<()> {
        write::remove(self, key, etag).await
    }

    async fn transaction(&self, ops: Vec<Op>) -> Result<()> {
        transaction::run(self, ops).await
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        list::list_keys(self, prefix).await
    }

    async fn watch(&self, prefix: &str) -> Result<WatchStream> {
        list::watch(self, prefix, false).await
    }

    async fn invalidations(&self, prefix: &str) -> Result<WatchStream> {
        list::watch(self, prefix, true).await
    }

    async fn destroy(&self) -> Result<()> {
        // Only this handle's share: the connection goes with the last one.
        if self.handle.release() && self.inner.owned {
            self.inner.client.drain().await.map_err(|e| error::wrap("drain", None, e))?;
        }
        Ok(())
    }
}
