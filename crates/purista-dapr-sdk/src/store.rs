//! [`DaprStateStore`]: the core contract over the sidecar's gRPC state API.

use std::{collections::HashMap, fmt, sync::Arc, time::Duration};

use dapr::dapr::proto::{
    common::v1::{Etag, StateItem, StateOptions},
    runtime::v1::{DeleteStateRequest, SaveStateRequest},
};
use purista_core::{
    Capabilities, ETag, Entry, Error, ErrorKind, Json, Op, PutMode, PutOptions, Result, StoreConfig,
    backend::{Backend, Combiner},
};

use crate::{
    CONTENT_TYPE_JSON, CONTENT_TYPE_KEY, Concurrency, DaprConfig, TTL_KEY,
    conn::{Client, Connection},
    read::parse_expiry,
};

/// The Dapr sidecar's state API as a PURISTA state store.
///
/// Every call goes to the sidecar over gRPC (`get_state` of N names is one
/// `GetBulkState`, halved and asked again while its answer is over a gRPC
/// message size limit: daprd's `--max-body-size`, 4 MiB by default, or
/// [`DaprConfig::max_message_size`]). Values are JSON, sent with
/// `contentType=application/json` item metadata. ETags, create-only writes
/// (Dapr's first-write), TTLs (whole seconds, rounded up) and transactions
/// are supported; listing and watching keys are not (the state API has
/// neither) and fail with `Unsupported`.
///
/// Clones (and stores from [`with_config`](Self::with_config)
/// or the bridge) share one connection. `destroy()` releases nothing, so it
/// never breaks the other handles; the connection closes when the last one
/// is dropped.
///
/// Errors: an ETag mismatch or a create-only write over an existing key is
/// `Conflict` naming the key, as is an ETag the store could never have
/// issued (Dapr answers `InvalidArgument` for those on some components).
/// A transaction Dapr fails with an ETag mismatch (it answers `Internal`
/// without naming the key) is `Conflict` too; the key is found by reading
/// the keys the transaction's conditions are on once more, and is left out
/// if they changed meanwhile. An empty ETag is `Conflict` before any call
/// (Dapr would take it for no ETag). Keys holding `||` are `InvalidKey`
/// before any call. A value over the sidecar's message size limit is
/// `InvalidValue` on a write and `Backend` (naming its key) on a read. An
/// unreachable sidecar or a refused token is `Unavailable`; no answer
/// within the request timeout is `Timeout` (the call may have been applied).
#[derive(Clone)]
pub struct DaprStateStore {
    pub(crate) conn: Connection,
    pub(crate) settings: Arc<Settings>,
}

/// What every call of a store sends besides its own arguments.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) store_name: String,
    /// Dapr's `StateConsistency`, as sent.
    pub(crate) consistency: i32,
    concurrency: Concurrency,
    ttl: bool,
    store: StoreConfig,
    /// Concurrent increments of one key, sent as one (compare-and-swap
    /// writes of one store no longer conflict with each other).
    counters: Combiner,
}

impl fmt::Debug for DaprStateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DaprStateStore")
            .field("endpoint", &self.conn.endpoint())
            .field("store_name", &self.settings.store_name)
            .field("store", &self.settings.store)
            .finish_non_exhaustive()
    }
}

impl DaprStateStore {
    /// Connects to the sidecar, waiting for it up to the config's
    /// `wait_for_sidecar`.
    pub async fn connect(config: DaprConfig) -> Result<DaprStateStore> {
        let conn = Connection::open(&config).await?;
        Ok(DaprStateStore::on(conn, &config))
    }

    /// A store over an existing connection.
    pub(crate) fn on(conn: Connection, config: &DaprConfig) -> DaprStateStore {
        let settings = Settings {
            store_name: config.store_name.clone(),
            consistency: config.consistency.proto(),
            concurrency: config.concurrency,
            ttl: config.ttl,
            store: config.store.clone(),
            counters: Combiner::default(),
        };
        DaprStateStore { conn, settings: Arc::new(settings) }
    }

    /// The same connection with another base config (enable flags, prefix).
    pub fn with_config(&self, store: StoreConfig) -> DaprStateStore {
        let settings = Settings { store, ..Settings::clone(&self.settings) };
        DaprStateStore { conn: self.conn.clone(), settings: Arc::new(settings) }
    }

    /// The state store component's name.
    pub fn component(&self) -> &str {
        &self.settings.store_name
    }

    /// The generated gRPC client on this store's connection, with the API
    /// token attached, for Dapr APIs this crate does not wrap.
    pub fn client(&self) -> Client {
        self.conn.client()
    }

    /// The state item for a write or a delete. A condition (create-only,
    /// an ETag) is sent with first-write concurrency, as Dapr wants it; a
    /// plain write or delete with the configured one.
    pub(crate) fn state_item(&self, key: &str, item: Item<'_>) -> StateItem {
        let (value, metadata, etag, conditional) = match item {
            Item::Write { value, options } => {
                let mut metadata =
                    HashMap::from([(CONTENT_TYPE_KEY.to_string(), CONTENT_TYPE_JSON.to_string())]);
                if self.settings.ttl {
                    // Core rounds TTLs up to whole seconds; -1 removes an earlier TTL.
                    let ttl =
                        options.ttl.map_or_else(|| "-1".to_string(), |t| t.as_secs().max(1).to_string());
                    metadata.insert(TTL_KEY.to_string(), ttl);
                }
                let etag = match &options.mode {
                    PutMode::Update(etag) => Some(etag),
                    PutMode::Upsert | PutMode::Create => None,
                };
                (value.into_bytes().to_vec(), metadata, etag, options.mode != PutMode::Upsert)
            }
            Item::Delete { etag } => (Vec::new(), HashMap::new(), etag, etag.is_some()),
        };
        let concurrency = if conditional { Concurrency::FirstWrite } else { self.settings.concurrency };
        StateItem {
            key: key.to_string(),
            value,
            etag: etag.map(|t| Etag { value: t.as_str().to_string() }),
            metadata,
            options: Some(StateOptions {
                concurrency: concurrency.proto(),
                consistency: self.settings.consistency,
            }),
        }
    }
}

/// What a state item carries.
pub(crate) enum Item<'a> {
    /// A value (JSON), under the options' condition and TTL.
    Write { value: Json, options: &'a PutOptions },
    /// A delete, if `etag` is given only at that ETag.
    Delete { etag: Option<&'a ETag> },
}

/// An ETag Dapr calls malformed can never match: report it as the conflict it is.
fn etag_conflict(error: Error, conditional: bool) -> Error {
    let invalid_etag = error.kind() == ErrorKind::InvalidArgument && error.message().contains("etag");
    if conditional && invalid_etag {
        let key = error.key().unwrap_or_default().to_string();
        return Error::conflict(key, format!("{} (an ETag this store never issued)", error.message()))
            .with_source(error);
    }
    error
}

// The hottest calls without the boxed future of `dyn StateStore`.
purista_core::direct_calls!(DaprStateStore);

impl Backend for DaprStateStore {
    fn name(&self) -> &str {
        "DaprStateStore"
    }

    fn config(&self) -> &StoreConfig {
        &self.settings.store
    }

    fn with_config(&self, config: StoreConfig) -> Self {
        DaprStateStore::with_config(self, config)
    }

    fn combiner(&self) -> Option<&Combiner> {
        Some(&self.settings.counters)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            etag: true,
            create_only: true,
            ttl: self.settings.ttl.then_some(Duration::from_secs(1)),
            // `ttlExpireTime` carries whole seconds.
            expiry_precision: self.settings.ttl.then_some(Duration::from_secs(1)),
            transactions: true,
            list: false,
            watch: false,
            // By compare-and-swap on ETags (core's default).
            counters: true,
            max_value_bytes: None,
            // The sidecar stores `<app-id>||<key>`.
            reserved_in_keys: &["||"],
            max_transaction_ops: None,
            ..Capabilities::default()
        }
    }

    async fn get_state(&self, keys: &[&str]) -> Result<Vec<Option<Json>>> {
        self.read_values(keys).await
    }

    async fn get_value(&self, key: &str) -> Result<Option<Json>> {
        let resp = self.read_one(key).await?;
        Ok((!resp.data.is_empty()).then(|| Json::from_stored(resp.data)))
    }

    async fn get_entry(&self, key: &str) -> Result<Option<Entry>> {
        let resp = self.read_one(key).await?;
        if resp.data.is_empty() {
            return Ok(None);
        }
        let expires_at = parse_expiry(&resp.metadata);
        Ok(Some(Entry { value: Json::from_stored(resp.data), etag: ETag::new(resp.etag), expires_at }))
    }

    async fn put(&self, key: &str, value: Json, options: &PutOptions) -> Result<Option<ETag>> {
        let conditional = options.mode != PutMode::Upsert;
        let req = self.conn.request(SaveStateRequest {
            store_name: self.settings.store_name.clone(),
            states: vec![self.state_item(key, Item::Write { value, options })],
        });
        self.conn
            .call("save", Some(key), |mut c| async move { c.save_state(req).await })
            .await
            .map_err(|e| etag_conflict(e, conditional))?;
        Ok(None)
    }

    async fn remove(&self, key: &str, etag: Option<&ETag>) -> Result<()> {
        let item = self.state_item(key, Item::Delete { etag });
        let req = self.conn.request(DeleteStateRequest {
            store_name: self.settings.store_name.clone(),
            key: item.key,
            etag: item.etag,
            options: item.options,
            metadata: HashMap::new(),
        });
        self.conn
            .call("delete", Some(key), |mut c| async move { c.delete_state(req).await })
            .await
            .map_err(|e| etag_conflict(e, etag.is_some()))
    }

    async fn transaction(&self, ops: Vec<Op>) -> Result<()> {
        self.execute(ops).await
    }
}
