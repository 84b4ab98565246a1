//! [`DaprStateStore`]: the core contract over the sidecar's gRPC state API.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use dapr::dapr::proto::{
    common::v1::{Etag, StateItem, StateOptions},
    runtime::v1::{
        BulkStateItem, DeleteStateRequest, ExecuteStateTransactionRequest, GetBulkStateRequest,
        GetStateRequest, GetStateResponse, SaveStateRequest, TransactionalStateOperation,
        dapr_client::DaprClient,
    },
};
use purista_core::{
    Capabilities, ETag, Entry, Error, ErrorKind, Json, Op, PutMode, PutOptions, Result, StoreConfig,
    backend::Backend,
};
use tonic::{
    Request, Response, Status,
    metadata::{AsciiMetadataValue, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

use crate::{
    API_TOKEN_HEADER, CONTENT_TYPE_JSON, CONTENT_TYPE_KEY, Concurrency, DaprConfig, TTL_EXPIRE_TIME_KEY,
    TTL_KEY,
    config::normalize_endpoint,
    error::{from_status, is_etag_mismatch, is_too_large, kind_of},
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The generated Dapr client with the API token attached to every call.
pub type Client = DaprClient<InterceptedService<Channel, TokenInterceptor>>;

/// Adds `dapr-api-token` metadata (marked sensitive) to every request.
#[derive(Clone)]
pub struct TokenInterceptor {
    token: Option<AsciiMetadataValue>,
}

impl fmt::Debug for TokenInterceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenInterceptor").field("token", &self.token.as_ref().map(|_| "<redacted>")).finish()
    }
}

impl Interceptor for TokenInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.token {
            request.metadata_mut().insert(API_TOKEN_HEADER, token.clone());
        }
        Ok(request)
    }
}

/// A connection to the sidecar: one HTTP/2 channel, shared by clones.
#[derive(Clone, Debug)]
pub(crate) struct Connection {
    client: Client,
    endpoint: Arc<str>,
    timeout: Duration,
}

impl Connection {
    /// Dials the sidecar, retrying with backoff until `wait_for_sidecar`
    /// has passed.
    pub(crate) async fn open(config: &DaprConfig) -> Result<Connection> {
        let url = normalize_endpoint(&config.endpoint)?;
        let token = match &config.api_token {
            None => None,
            Some(t) => {
                let mut value: AsciiMetadataValue = MetadataValue::try_from(t.as_str()).map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidArgument,
                        "the Dapr API token is not a valid gRPC metadata value",
                    )
                })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let invalid =
            |e| Error::new(ErrorKind::InvalidArgument, format!("dapr endpoint {url:?}")).with_source(e);
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(invalid)?
            .connect_timeout(config.request_timeout)
            .tcp_nodelay(true);
        let started = tokio::time::Instant::now();
        let deadline = started + config.wait_for_sidecar;
        let mut delay = Duration::from_millis(25);
        let mut attempts = 0u32;
        let channel = loop {
            attempts += 1;
            // One attempt never runs past the deadline (a host that drops
            // packets would otherwise hold it for the whole connect timeout).
            let left = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .max(Duration::from_millis(100));
            let attempt = match tokio::time::timeout(left, endpoint.connect()).await {
                Ok(result) => result.map_err(|e| Box::new(e) as BoxError),
                Err(_) => Err(Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut)) as BoxError),
            };
            match attempt {
                Ok(channel) => break channel,
                Err(e) => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        let message = format!(
                            "dapr sidecar at {url} is not reachable after {attempts} attempts in {:?}",
                            now - started
                        );
                        return Err(Error::new(ErrorKind::Unavailable, message).with_source(e));
                    }
                    tracing::debug!(endpoint = %url, attempts, "dapr sidecar not reachable yet, retrying");
                    tokio::time::sleep(delay.min(deadline - now)).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        };
        tracing::debug!(endpoint = %url, attempts, "connected to the dapr sidecar");
        // tonic refuses answers over 4 MiB by default, below what a sidecar
        // with a raised --max-body-size sends.
        let client = DaprClient::with_interceptor(channel, TokenInterceptor { token })
            .max_decoding_message_size(config.max_message_size);
        Ok(Connection { client, endpoint: url.into(), timeout: config.request_timeout })
    }

    /// The generated client (token attached), for RPCs this crate does not wrap.
    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    /// Runs one RPC under the request timeout. The deadline travels as the
    /// `grpc-timeout` header, which tonic's channel enforces on this side too
    /// (and the sidecar on its side), so no second timer is set here.
    async fn call<T, F, Fut>(&self, op: &str, key: Option<&str>, rpc: F) -> Result<T>
    where
        F: FnOnce(Client, Duration) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        match rpc(self.client.clone(), self.timeout).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(self.failed(status, op, key)),
        }
    }

    /// The error for a failed RPC; a missed deadline names the sidecar and
    /// the timeout.
    fn failed(&self, status: Status, op: &str, key: Option<&str>) -> Error {
        if kind_of(&status) != ErrorKind::Timeout {
            return from_status(status, op, key);
        }
        let message =
            format!("dapr {op}: the sidecar at {} did not answer within {:?}", self.endpoint, self.timeout);
        let source = from_status(status, op, key);
        let error = Error::new(ErrorKind::Timeout, message).with_source(source);
        match key {
            Some(k) => error.with_key(k),
            None => error,
        }
    }
}

fn request<T>(message: T, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    request
}

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
    conn: Connection,
    settings: Arc<Settings>,
}

#[derive(Debug)]
struct Settings {
    store_name: String,
    consistency: i32,
    concurrency: Concurrency,
    ttl: bool,
    store: StoreConfig,
}

impl fmt::Debug for DaprStateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DaprStateStore")
            .field("endpoint", &self.conn.endpoint)
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
        };
        DaprStateStore { conn, settings: Arc::new(settings) }
    }

    /// The same connection with another base config (enable flags, prefix).
    pub fn with_config(&self, store: StoreConfig) -> DaprStateStore {
        let s = &self.settings;
        let settings = Settings {
            store_name: s.store_name.clone(),
            consistency: s.consistency,
            concurrency: s.concurrency,
            ttl: s.ttl,
            store,
        };
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

    fn options(&self, concurrency: Concurrency) -> Option<StateOptions> {
        Some(StateOptions { concurrency: concurrency.proto(), consistency: self.settings.consistency })
    }

    /// A state item for a write (`value`) or a delete (`None`).
    fn item(&self, key: &str, value: Option<(Json, &PutOptions)>, etag: Option<&ETag>) -> StateItem {
        let mut metadata = HashMap::new();
        let mut concurrency = self.settings.concurrency;
        let mut bytes = Vec::new();
        let mut etag = etag.map(|t| Etag { value: t.as_str().to_string() });
        if let Some((value, options)) = value {
            metadata.insert(CONTENT_TYPE_KEY.to_string(), CONTENT_TYPE_JSON.to_string());
            if self.settings.ttl {
                // Core rounds TTLs up to whole seconds; -1 removes an earlier TTL.
                let ttl = options.ttl.map_or_else(|| "-1".to_string(), |t| t.as_secs().max(1).to_string());
                metadata.insert(TTL_KEY.to_string(), ttl);
            }
            match &options.mode {
                PutMode::Upsert => {}
                PutMode::Create => concurrency = Concurrency::FirstWrite,
                PutMode::Update(tag) => {
                    concurrency = Concurrency::FirstWrite;
                    etag = Some(Etag { value: tag.as_str().to_string() });
                }
            }
            bytes = value.into_bytes().to_vec();
        } else if etag.is_some() {
            concurrency = Concurrency::FirstWrite;
        }
        StateItem { key: key.to_string(), value: bytes, etag, metadata, options: self.options(concurrency) }
    }

    /// Names the key a failed transaction conflicted on: reads the keys its
    /// conditions are on and replays the conditions in order.
    async fn conflicting_key(&self, ops: &[Op]) -> Option<String> {
        let conditioned: Vec<&str> = ops
            .iter()
            .filter(|op| match op {
                Op::Put { options, .. } => options.mode != PutMode::Upsert,
                Op::Remove { etag, .. } => etag.is_some(),
            })
            .map(Op::key)
            .collect();
        if conditioned.len() == 1 {
            return Some(conditioned[0].to_string());
        }
        if conditioned.is_empty() {
            return None;
        }
        let current = self.read_etags(&conditioned).await.ok()?;
        // Some(Some(tag)): present at tag; Some(None): absent; None: written
        // by an earlier step (present, new tag).
        let mut state: HashMap<&str, Option<Option<String>>> =
            conditioned.iter().zip(current).map(|(k, t)| (*k, Some(t))).collect();
        for op in ops {
            let key = op.key();
            let now = state.get(key).cloned().unwrap_or(Some(None));
            let present = !matches!(now, Some(None));
            let fails = |tag: &ETag| match &now {
                Some(Some(t)) => t != tag.as_str(),
                _ => true,
            };
            match op {
                Op::Put { options, .. } => {
                    let failed = match &options.mode {
                        PutMode::Upsert => false,
                        PutMode::Create => present,
                        PutMode::Update(tag) => fails(tag),
                    };
                    if failed {
                        return Some(key.to_string());
                    }
                    if state.contains_key(key) {
                        state.insert(key, None);
                    }
                }
                Op::Remove { etag, .. } => {
                    if etag.as_ref().is_some_and(fails) {
                        return Some(key.to_string());
                    }
                    if state.contains_key(key) {
                        state.insert(key, Some(None));
                    }
                }
            }
        }
        None
    }

    /// One `GetState`.
    async fn get(&self, key: &str) -> Result<GetStateResponse> {
        let req = GetStateRequest {
            store_name: self.settings.store_name.clone(),
            key: key.to_string(),
            consistency: self.settings.consistency,
            metadata: HashMap::new(),
        };
        self.conn.call("get", Some(key), |mut c, t| async move { c.get_state(request(req, t)).await }).await
    }

    /// `GetBulkState` for `keys`: the sidecar's items, in any order. One
    /// call, unless the request or its answer is over a gRPC message size
    /// limit (the sidecar's or this client's): then the keys are halved and
    /// asked again, until each answer fits or one key alone does not (an
    /// error naming that key). Each call has the full request timeout.
    async fn bulk_get(&self, keys: &[&str]) -> Result<Vec<BulkStateItem>> {
        let mut items = Vec::new();
        let mut pending = vec![keys];
        while let Some(chunk) = pending.pop() {
            let req = GetBulkStateRequest {
                store_name: self.settings.store_name.clone(),
                keys: chunk.iter().map(|k| k.to_string()).collect(),
                parallelism: 0,
                metadata: HashMap::new(),
            };
            match self.conn.client().get_bulk_state(request(req, self.conn.timeout)).await {
                // The common case, one answer, is taken as it is.
                Ok(resp) if items.is_empty() => items = resp.into_inner().items,
                Ok(resp) => items.extend(resp.into_inner().items),
                Err(status) if is_too_large(&status) && chunk.len() > 1 => {
                    let (first, second) = chunk.split_at(chunk.len() / 2);
                    pending.push(second);
                    pending.push(first);
                }
                Err(status) => {
                    // A failure of one key's read is about that key.
                    let key = match chunk {
                        [only] => Some(*only),
                        _ => None,
                    };
                    return Err(self.conn.failed(status, "bulk get", key));
                }
            }
        }
        Ok(items)
    }

    /// Current ETags of `keys` (`None` where missing), in order.
    async fn read_etags(&self, keys: &[&str]) -> Result<Vec<Option<String>>> {
        let by_key: HashMap<String, (bool, String)> =
            self.bulk_get(keys).await?.into_iter().map(|i| (i.key, (!i.data.is_empty(), i.etag))).collect();
        Ok(keys
            .iter()
            .map(|k| by_key.get(*k).filter(|(present, _)| *present).map(|(_, t)| t.clone()))
            .collect())
    }
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

fn parse_expiry(metadata: &HashMap<String, String>) -> Option<SystemTime> {
    let raw = metadata.get(TTL_EXPIRE_TIME_KEY)?;
    match chrono::DateTime::parse_from_rfc3339(raw) {
        Ok(t) => Some(SystemTime::from(t.with_timezone(&chrono::Utc))),
        Err(e) => {
            tracing::warn!(value = %raw, error = %e, "dapr sidecar sent an unreadable ttlExpireTime");
            None
        }
    }
}

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

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            etag: true,
            create_only: true,
            ttl: self.settings.ttl.then_some(Duration::from_secs(1)),
            transactions: true,
            list: false,
            watch: false,
            max_value_bytes: None,
            // The sidecar stores `<app-id>||<key>`.
            reserved_in_keys: &["||"],
        }
    }

    async fn get_state(&self, keys: &[&str]) -> Result<Vec<Option<Json>>> {
        // Items moved, not copied: a value becomes `Bytes` once, and a name
        // asked twice shares it.
        let by_key: HashMap<String, (String, Bytes)> =
            self.bulk_get(keys).await?.into_iter().map(|i| (i.key, (i.error, Bytes::from(i.data)))).collect();
        keys.iter()
            .map(|k| match by_key.get(*k) {
                None => Err(Error::new(ErrorKind::Backend, "dapr bulk get: the sidecar answered no item")
                    .with_key(*k)),
                Some((error, _)) if !error.is_empty() => {
                    Err(Error::new(ErrorKind::Backend, format!("dapr bulk get: {error}")).with_key(*k))
                }
                Some((_, data)) if data.is_empty() => Ok(None),
                Some((_, data)) => Ok(Some(Json::from_stored(data.clone()))),
            })
            .collect()
    }

    async fn get_value(&self, key: &str) -> Result<Option<Json>> {
        let resp = self.get(key).await?;
        Ok((!resp.data.is_empty()).then(|| Json::from_stored(resp.data)))
    }

    async fn get_entry(&self, key: &str) -> Result<Option<Entry>> {
        let resp = self.get(key).await?;
        if resp.data.is_empty() {
            return Ok(None);
        }
        let expires_at = parse_expiry(&resp.metadata);
        Ok(Some(Entry { value: Json::from_stored(resp.data), etag: ETag::new(resp.etag), expires_at }))
    }

    async fn put(&self, key: &str, value: Json, options: &PutOptions) -> Result<Option<ETag>> {
        let conditional = options.mode != PutMode::Upsert;
        let req = SaveStateRequest {
            store_name: self.settings.store_name.clone(),
            states: vec![self.item(key, Some((value, options)), None)],
        };
        self.conn
            .call("save", Some(key), |mut c, t| async move { c.save_state(request(req, t)).await })
            .await
            .map_err(|e| etag_conflict(e, conditional))?;
        Ok(None)
    }

    async fn remove(&self, key: &str, etag: Option<&ETag>) -> Result<()> {
        let item = self.item(key, None, etag);
        let req = DeleteStateRequest {
            store_name: self.settings.store_name.clone(),
            key: item.key,
            etag: item.etag,
            options: item.options,
            metadata: HashMap::new(),
        };
        self.conn
            .call("delete", Some(key), |mut c, t| async move { c.delete_state(request(req, t)).await })
            .await
            .map_err(|e| etag_conflict(e, etag.is_some()))
    }

    async fn transaction(&self, ops: Vec<Op>) -> Result<()> {
        let operations = ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, options } => TransactionalStateOperation {
                    operation_type: "upsert".into(),
                    request: Some(self.item(key, Some((value.clone(), options)), None)),
                },
                Op::Remove { key, etag } => TransactionalStateOperation {
                    operation_type: "delete".into(),
                    request: Some(self.item(key, None, etag.as_ref())),
                },
            })
            .collect();
        let req = ExecuteStateTransactionRequest {
            store_name: self.settings.store_name.clone(),
            operations,
            metadata: HashMap::new(),
        };
        let status = match self.conn.client().execute_state_transaction(request(req, self.conn.timeout)).await
        {
            Ok(_) => return Ok(()),
            Err(status) if kind_of(&status) == ErrorKind::Timeout => {
                return Err(self.conn.failed(status, "transaction", None));
            }
            Err(status) => status,
        };
        let invalid_etag = status.code() == tonic::Code::InvalidArgument
            && status.message().to_ascii_lowercase().contains("etag");
        let internal_etag =
            status.code() == tonic::Code::Internal && status.message().to_ascii_lowercase().contains("etag");
        if is_etag_mismatch(&status) || invalid_etag || internal_etag {
            let message = format!("dapr transaction: {}", status.message());
            let source = from_status(status, "transaction", None);
            let error = Error::new(ErrorKind::Conflict, message).with_source(source);
            return Err(match self.conflicting_key(&ops).await {
                Some(key) => error.with_key(key),
                None => error,
            });
        }
        Err(from_status(status, "transaction", None))
    }
}
