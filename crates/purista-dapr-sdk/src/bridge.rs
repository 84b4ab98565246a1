//! [`DaprEventBridge`]: the sidecar connection a PURISTA service is built on.

use std::fmt;

use purista_core::{Result, Service, ServiceBuilder};

use crate::{
    DaprConfig, DaprStateStore,
    conn::{Client, Connection},
};

/// Settings of a [`DaprEventBridge`], as PURISTA's `DaprEventBridge` takes
/// them: the API token and the state, secret and config store names, plus
/// where the sidecar is.
///
/// ```
/// use purista_dapr_sdk::DaprEventBridgeConfig;
///
/// let config = DaprEventBridgeConfig::from_env()
///     .state_store_name("my-state-store")
///     .secret_store_name("my-secret-store")
///     .config_store_name("my-config-store");
/// assert_eq!(config.dapr().component(), "my-state-store");
/// ```
#[derive(Clone, Default)]
pub struct DaprEventBridgeConfig {
    dapr: DaprConfig,
    secret_store_name: Option<String>,
    config_store_name: Option<String>,
}

impl fmt::Debug for DaprEventBridgeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DaprEventBridgeConfig")
            .field("dapr", &self.dapr)
            .field("secret_store_name", &self.secret_store_name)
            .field("config_store_name", &self.config_store_name)
            .finish()
    }
}

impl DaprEventBridgeConfig {
    /// Endpoint and API token from the environment ([`DaprConfig::from_env`]).
    pub fn from_env() -> Self {
        DaprEventBridgeConfig { dapr: DaprConfig::from_env(), ..Default::default() }
    }

    /// Connection and state store settings in full.
    pub fn with_dapr(mut self, dapr: DaprConfig) -> Self {
        self.dapr = dapr;
        self
    }

    /// The API token (`daprApiToken`).
    pub fn api_token(mut self, token: impl Into<String>) -> Self {
        self.dapr = self.dapr.api_token(token);
        self
    }

    /// The state store component (`stateStoreName`).
    pub fn state_store_name(mut self, name: impl Into<String>) -> Self {
        self.dapr = self.dapr.store_name(name);
        self
    }

    /// The secret store component (`secretStoreName`); kept for the secret
    /// store, which this crate does not implement yet.
    pub fn secret_store_name(mut self, name: impl Into<String>) -> Self {
        self.secret_store_name = Some(name.into());
        self
    }

    /// The configuration store component (`configStoreName`); kept for the
    /// config store, which this crate does not implement yet.
    pub fn config_store_name(mut self, name: impl Into<String>) -> Self {
        self.config_store_name = Some(name.into());
        self
    }

    /// The connection and state store settings.
    pub fn dapr(&self) -> &DaprConfig {
        &self.dapr
    }
}

/// One connection to the Dapr sidecar that services are built on.
///
/// As in PURISTA, a service gets its state store from the bridge, with no
/// separate constructor: [`service`](Self::service) starts a
/// [`ServiceBuilder`] whose state store is the bridge's
/// [`DaprStateStore`], and every store handed out shares the bridge's one
/// connection.
///
/// What it does not do yet: messaging. Commands are not received from, and
/// events not published to, Dapr pub/sub; a service built here is invoked
/// in process ([`Service::invoke`]). The secret and config store names are
/// kept ([`secret_store_name`](Self::secret_store_name),
/// [`config_store_name`](Self::config_store_name)) but no secret or config
/// store is implemented; [`client`](Self::client) gives the raw gRPC client
/// for those APIs meanwhile.
#[derive(Clone)]
pub struct DaprEventBridge {
    conn: Connection,
    config: DaprEventBridgeConfig,
    states: DaprStateStore,
}

impl fmt::Debug for DaprEventBridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DaprEventBridge").field("config", &self.config).finish_non_exhaustive()
    }
}

impl DaprEventBridge {
    /// Connects to the sidecar (waiting for it as configured).
    pub async fn connect(config: DaprEventBridgeConfig) -> Result<DaprEventBridge> {
        let conn = Connection::open(&config.dapr).await?;
        let states = DaprStateStore::on(conn.clone(), &config.dapr);
        Ok(DaprEventBridge { conn, config, states })
    }

    /// The state store, on the bridge's connection.
    pub fn state_store(&self) -> DaprStateStore {
        self.states.clone()
    }

    /// A service whose `context.states` is the bridge's state store.
    pub fn service(&self, name: impl Into<String>, version: impl Into<String>) -> ServiceBuilder {
        Service::builder(name, version).state_store(self.state_store())
    }

    /// The state store component's name.
    pub fn state_store_name(&self) -> &str {
        self.config.dapr.component()
    }

    /// The secret store component's name, if configured.
    pub fn secret_store_name(&self) -> Option<&str> {
        self.config.secret_store_name.as_deref()
    }

    /// The configuration store component's name, if configured.
    pub fn config_store_name(&self) -> Option<&str> {
        self.config.config_store_name.as_deref()
    }

    /// The generated gRPC client on the bridge's connection (token attached).
    pub fn client(&self) -> Client {
        self.conn.client()
    }
}
