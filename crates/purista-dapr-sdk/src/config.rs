//! Where the sidecar is and how the store talks to it.

use std::{fmt, time::Duration};

use dapr::dapr::proto::common::v1::state_options::{StateConcurrency, StateConsistency};
use purista_core::{Error, ErrorKind, Result, StoreConfig};

/// Dapr's default gRPC port.
pub const DEFAULT_GRPC_PORT: u16 = 50001;
/// The state store component name `dapr init` creates.
pub const DEFAULT_STATE_STORE: &str = "statestore";
/// The largest answer the client accepts from the sidecar by default: well
/// above daprd's own limit (`--max-body-size`, 4 MiB by default), so that
/// the sidecar's setting is the one that counts.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;

/// How strongly reads and writes are replicated (Dapr's `consistency` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Let the component decide (Dapr's default is eventual).
    Unspecified,
    /// Eventual consistency.
    Eventual,
    /// Strong consistency: a read sees every acknowledged write.
    #[default]
    Strong,
}

impl Consistency {
    pub(crate) fn proto(self) -> i32 {
        match self {
            Consistency::Unspecified => StateConsistency::ConsistencyUnspecified as i32,
            Consistency::Eventual => StateConsistency::ConsistencyEventual as i32,
            Consistency::Strong => StateConsistency::ConsistencyStrong as i32,
        }
    }
}

/// How plain writes and removes treat concurrent writers (Dapr's
/// `concurrency` option). Conditional operations (create-only, update or
/// remove with an ETag) always use first-write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Concurrency {
    /// Let the component decide (Dapr's default is last-write).
    Unspecified,
    /// Last write wins.
    #[default]
    LastWrite,
    /// First write wins: a plain write to an existing key fails with
    /// `Conflict`, as in Dapr.
    FirstWrite,
}

impl Concurrency {
    pub(crate) fn proto(self) -> i32 {
        match self {
            Concurrency::Unspecified => StateConcurrency::ConcurrencyUnspecified as i32,
            Concurrency::LastWrite => StateConcurrency::ConcurrencyLastWrite as i32,
            Concurrency::FirstWrite => StateConcurrency::ConcurrencyFirstWrite as i32,
        }
    }
}

/// Settings of a [`DaprStateStore`](crate::DaprStateStore).
///
/// The API token is never shown by `Debug`, logged, nor put in a URL or an
/// error: it only travels as `dapr-api-token` gRPC metadata.
///
/// ```
/// use std::time::Duration;
/// use purista_dapr_sdk::{DaprConfig, Consistency};
///
/// let config = DaprConfig::from_env()
///     .store_name("orders-state")
///     .consistency(Consistency::Strong)
///     .request_timeout(Duration::from_secs(2));
/// assert_eq!(config.component(), "orders-state");
/// assert_eq!(config.call_timeout(), Duration::from_secs(2));
/// ```
#[derive(Clone)]
pub struct DaprConfig {
    pub(crate) endpoint: String,
    pub(crate) api_token: Option<String>,
    pub(crate) store_name: String,
    pub(crate) consistency: Consistency,
    pub(crate) concurrency: Concurrency,
    pub(crate) request_timeout: Duration,
    pub(crate) wait_for_sidecar: Duration,
    pub(crate) ttl: bool,
    pub(crate) max_message_size: usize,
    pub(crate) store: StoreConfig,
}

impl fmt::Debug for DaprConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DaprConfig")
            .field("endpoint", &self.endpoint)
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .field("store_name", &self.store_name)
            .field("consistency", &self.consistency)
            .field("concurrency", &self.concurrency)
            .field("request_timeout", &self.request_timeout)
            .field("wait_for_sidecar", &self.wait_for_sidecar)
            .field("ttl", &self.ttl)
            .field("max_message_size", &self.max_message_size)
            .field("store", &self.store)
            .finish()
    }
}

impl Default for DaprConfig {
    /// `http://127.0.0.1:50001`, no token, store `statestore`, strong
    /// consistency, last-write, 5 s per request, wait up to 30 s for the
    /// sidecar, TTLs on, answers up to [`DEFAULT_MAX_MESSAGE_SIZE`]. Reads no
    /// environment: see [`DaprConfig::from_env`].
    fn default() -> Self {
        DaprConfig {
            endpoint: format!("http://127.0.0.1:{DEFAULT_GRPC_PORT}"),
            api_token: None,
            store_name: DEFAULT_STATE_STORE.into(),
            consistency: Consistency::default(),
            concurrency: Concurrency::default(),
            request_timeout: Duration::from_secs(5),
            wait_for_sidecar: Duration::from_secs(30),
            ttl: true,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            store: StoreConfig::default(),
        }
    }
}

impl DaprConfig {
    /// The defaults, with the endpoint and token from the environment as the
    /// Dapr SDKs read them: `DAPR_GRPC_ENDPOINT`, else
    /// `http://127.0.0.1:$DAPR_GRPC_PORT`, else `http://127.0.0.1:50001`;
    /// `DAPR_API_TOKEN`.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        DaprConfig {
            endpoint: resolve_endpoint(var("DAPR_GRPC_ENDPOINT"), var("DAPR_GRPC_PORT")),
            api_token: var("DAPR_API_TOKEN"),
            ..DaprConfig::default()
        }
    }

    /// The sidecar's gRPC endpoint (`http://host:port`, or `host:port`).
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into();
        self
    }

    /// The API token sent as `dapr-api-token` metadata.
    pub fn api_token(mut self, token: impl Into<String>) -> Self {
        self.api_token = Some(token.into());
        self
    }

    /// Sends no API token.
    pub fn no_api_token(mut self) -> Self {
        self.api_token = None;
        self
    }

    /// The state store component's name.
    pub fn store_name(mut self, name: impl Into<String>) -> Self {
        self.store_name = name.into();
        self
    }

    /// The consistency asked of reads and writes.
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// The concurrency of plain writes and removes.
    pub fn concurrency(mut self, concurrency: Concurrency) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// How long one call may take before it fails with `Timeout`.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long [`connect`](crate::DaprStateStore::connect) keeps retrying a
    /// sidecar that is not up yet (with backoff) before it fails with
    /// `Unavailable`. Zero tries once.
    pub fn wait_for_sidecar(mut self, deadline: Duration) -> Self {
        self.wait_for_sidecar = deadline;
        self
    }

    /// Whether the component supports TTLs (on by default). With TTLs on,
    /// a write without a TTL sends `ttlInSeconds=-1`, which removes an
    /// earlier TTL; switch off for components without TTL support, and
    /// writes with a TTL fail with `Unsupported`.
    pub fn ttl(mut self, on: bool) -> Self {
        self.ttl = on;
        self
    }

    /// The largest gRPC answer this client accepts (default
    /// [`DEFAULT_MAX_MESSAGE_SIZE`]). A `get_state` whose answer would be
    /// larger, here or over the sidecar's own limit (daprd's
    /// `--max-body-size`), is split into smaller requests; a single value
    /// over either limit fails with `Backend`, naming its key.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The base config (enable flags, key prefix) the core enforces.
    pub fn store_config(mut self, store: StoreConfig) -> Self {
        self.store = store;
        self
    }

    // Reading a config back: the builder methods above own the plain names,
    // so the getters say what they answer.

    /// The sidecar's endpoint, as set by [`endpoint`](Self::endpoint).
    pub fn sidecar_endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The state store component's name, as set by
    /// [`store_name`](Self::store_name) (the name
    /// [`DaprStateStore::component`](crate::DaprStateStore::component) reports).
    pub fn component(&self) -> &str {
        &self.store_name
    }

    /// Whether an API token is set (the token itself is not exposed).
    pub fn has_api_token(&self) -> bool {
        self.api_token.is_some()
    }

    /// How long one call may take, as set by
    /// [`request_timeout`](Self::request_timeout).
    pub fn call_timeout(&self) -> Duration {
        self.request_timeout
    }
}

/// `DAPR_GRPC_ENDPOINT`, else the port on loopback, else Dapr's default.
pub(crate) fn resolve_endpoint(grpc_endpoint: Option<String>, grpc_port: Option<String>) -> String {
    match (grpc_endpoint, grpc_port) {
        (Some(endpoint), _) => endpoint.trim().to_string(),
        (None, Some(port)) => format!("http://127.0.0.1:{}", port.trim()),
        (None, None) => format!("http://127.0.0.1:{DEFAULT_GRPC_PORT}"),
    }
}

/// Turns the forms Dapr accepts into a URL tonic can dial: `host:port` gets
/// `http://`, `?tls=false` is dropped. TLS and unix sockets are refused.
pub(crate) fn normalize_endpoint(endpoint: &str) -> Result<String> {
    let invalid =
        |why: &str| Error::new(ErrorKind::InvalidArgument, format!("dapr endpoint {endpoint:?}: {why}"));
    let (base, query) = match endpoint.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (endpoint, None),
    };
    if let Some(query) = query {
        for pair in query.split('&') {
            match pair {
                "tls=false" | "" => {}
                "tls=true" => {
                    return Err(invalid("TLS to the sidecar is not supported; use plain-text loopback"));
                }
                _ => return Err(invalid("unknown query parameter")),
            }
        }
    }
    let base = base.trim_end_matches('/');
    if matches!(base, "" | "http:" | "https:" | "dns:") {
        return Err(invalid("no host"));
    }
    let url = if let Some(rest) = base.strip_prefix("dns:///").or_else(|| base.strip_prefix("dns:")) {
        format!("http://{rest}")
    } else if base.starts_with("http://") {
        base.to_string()
    } else if base.starts_with("https://") {
        return Err(invalid("TLS to the sidecar is not supported; use plain-text loopback"));
    } else if base.contains("://") || base.starts_with("unix:") {
        return Err(invalid("only http:// endpoints are supported"));
    } else {
        format!("http://{base}")
    };
    if url.len() <= "http://".len() {
        return Err(invalid("no host"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_from_env_order() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(resolve_endpoint(s("http://dapr:1234"), s("9")), "http://dapr:1234");
        assert_eq!(resolve_endpoint(None, s("50002")), "http://127.0.0.1:50002");
        assert_eq!(resolve_endpoint(None, None), "http://127.0.0.1:50001");
    }

    #[test]
    fn endpoint_forms() {
        assert_eq!(normalize_endpoint("localhost:50001").unwrap(), "http://localhost:50001");
        assert_eq!(normalize_endpoint("http://127.0.0.1:5/").unwrap(), "http://127.0.0.1:5");
        assert_eq!(normalize_endpoint("dns:///dapr:50001?tls=false").unwrap(), "http://dapr:50001");
        for bad in ["https://dapr:443", "dapr:443?tls=true", "unix:///tmp/dapr.sock", "", "http://"] {
            let err = normalize_endpoint(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let config = DaprConfig::default().api_token("hunter2-token");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert!(config.has_api_token());
        assert_eq!(config.endpoint("dapr:50001").sidecar_endpoint(), "dapr:50001");
    }
}
