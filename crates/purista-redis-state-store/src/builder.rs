//! Building and connecting a store: the builder, fred's settings (never
//! re-send a command), and the address and passwords errors may and may not
//! show.

use std::{fmt, time::Duration};

use fred::{
    clients::{Client, Pool},
    interfaces::ClientLike,
    types::config::{Config, ConnectionConfig, PerformanceConfig, ReconnectPolicy, ServerConfig},
};
use purista_core::{Error, ErrorKind, Result, StoreConfig};

use crate::{CacheFeed, RedisStateStore, error::Target, replicas::ReplicaWait};

/// How long a command may wait (for a reconnect, or for the answer) by default.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting may take by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds a [`RedisStateStore`]: URL or fred config, store config, pool size,
/// timeouts and reconnect policy.
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    source: Source,
    store: StoreConfig,
    pool_size: usize,
    command_timeout: Duration,
    connect_timeout: Duration,
    reconnect: ReconnectPolicy,
    replicas: ReplicaWait,
    cache_feed: CacheFeed,
}

#[derive(Clone)]
enum Source {
    Url(String),
    Config(Box<Config>),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Neither the URL nor the config: both may hold a password.
        match self {
            Source::Url(_) => f.write_str("Url(..)"),
            Source::Config(c) => write!(f, "Config({})", describe(c).address),
        }
    }
}

impl RedisStoreBuilder {
    /// From a URL: `redis://`, `rediss://`, `redis-cluster://`,
    /// `redis-sentinel://`, as [`Config::from_url`] parses them.
    pub fn from_url(url: impl Into<String>) -> Self {
        Self::new(Source::Url(url.into()))
    }

    /// From a fred config.
    pub fn from_config(config: Config) -> Self {
        Self::new(Source::Config(Box::new(config)))
    }

    fn new(source: Source) -> Self {
        RedisStoreBuilder {
            source,
            store: StoreConfig::default(),
            pool_size: 1,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            reconnect: ReconnectPolicy::new_exponential(0, 100, 2_000, 2),
            replicas: ReplicaWait::ForDeployment,
            cache_feed: CacheFeed::default(),
        }
    }

    /// The base config (enable flags, key prefix).
    pub fn store_config(mut self, config: StoreConfig) -> Self {
        self.store = config;
        self
    }

    /// Connections, used round-robin (each pipelines; 1 is plenty for most).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// How long a command may wait for a reconnect and its answer.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// How long connecting may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How to reconnect after a connection breaks.
    pub fn reconnect_policy(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// After each write, waits (`WAIT`) until `replicas` replicas have it, for
    /// at most `timeout`; a write not confirmed in time fails with
    /// `Unavailable` (it reached the master, but may be lost on failover).
    /// With it, no acknowledged write is lost when a replica is promoted.
    /// Defaults to [`DEFAULT_SENTINEL_WAIT`](crate::DEFAULT_SENTINEL_WAIT)
    /// behind Sentinel, off otherwise; `replicas = 0` turns it off.
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.replicas = ReplicaWait::chosen(replicas, timeout);
        self
    }

    /// Where a near cache's invalidations come from (`CLIENT TRACKING` by
    /// default; see [`CacheFeed`]).
    pub fn cache_feed(mut self, feed: CacheFeed) -> Self {
        self.cache_feed = feed;
        self
    }

    /// Connects, failing with `Unavailable` (naming the address) when the
    /// server cannot be reached within the connect timeout.
    pub async fn connect(self) -> Result<RedisStateStore> {
        let config = match self.source {
            Source::Url(url) => Config::from_url(&url).map_err(|e| {
                // fred's URL errors do not echo the URL; ours must not either.
                let target = Target { address: "<url>".into(), secrets: url_secrets(&url) };
                target.with_source(Error::new(ErrorKind::InvalidArgument, "invalid redis URL"), e)
            })?,
            Source::Config(config) => *config,
        };
        let target = describe(&config);
        let perf = PerformanceConfig { default_command_timeout: self.command_timeout, ..Default::default() };
        let connection = ConnectionConfig {
            // Never re-send a command that reached a connection: see the crate docs.
            max_command_attempts: 1,
            // fred would spend that one attempt following a Cluster redirect:
            // the store sends redirected commands again itself (`redirect`).
            max_redirections: 0,
            connection_timeout: self.connect_timeout,
            internal_command_timeout: self.connect_timeout,
            ..Default::default()
        };
        let pool = Pool::new(config, Some(perf), Some(connection), Some(self.reconnect), self.pool_size)
            .map_err(|e| target.error(e, "configuring the client"))?;
        connect_pool(&pool, &target, self.connect_timeout * 2).await?;
        let behind_sentinel = matches!(pool.next().client_config().server, ServerConfig::Sentinel { .. });
        let replicas = self.replicas.resolve(behind_sentinel);
        Ok(RedisStateStore::open(pool, self.store, target, true, replicas, self.cache_feed).await)
    }
}

impl RedisStateStore {
    /// Connects to `url` with the default [`StoreConfig`] and settings.
    pub async fn connect(url: &str) -> Result<Self> {
        RedisStoreBuilder::from_url(url).connect().await
    }

    /// A builder from a URL (see [`RedisStoreBuilder::from_url`]).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder::from_url(url)
    }

    /// A store on a client you already have (connected here if it is not).
    /// `destroy` leaves the client open.
    pub async fn from_client(client: Client, config: StoreConfig) -> Result<Self> {
        let pool = Pool::from_clients(vec![client])
            .map_err(|e| Error::new(ErrorKind::InvalidArgument, "invalid client").with_source(e))?;
        Self::from_pool(pool, config).await
    }

    /// A store on a pool you already have (connected here if it is not).
    /// `destroy` leaves the pool open.
    pub async fn from_pool(pool: Pool, config: StoreConfig) -> Result<Self> {
        let client = pool.next();
        let target = describe(&client.client_config());
        if client.connection_config().max_command_attempts > 1 {
            tracing::warn!(
                address = %target.address,
                "fred's max_command_attempts > 1: a write in flight during a reconnect may be applied twice; \
                 set ConnectionConfig::max_command_attempts = 1 to avoid it"
            );
        }
        let connection = client.connection_config();
        if client.is_clustered() && connection.max_command_attempts == 1 && connection.max_redirections > 0 {
            tracing::warn!(
                address = %target.address,
                "fred spends a command attempt on each Cluster redirect: with max_command_attempts = 1 every redirected \
                 command fails; set ConnectionConfig::max_redirections = 0 and the store sends them again itself"
            );
        }
        if !pool.clients().iter().all(|c| c.is_connected()) {
            connect_pool(&pool, &target, DEFAULT_CONNECT_TIMEOUT * 2).await?;
        }
        Ok(Self::open(pool, config, target, false, None, CacheFeed::default()).await)
    }
}

async fn connect_pool(pool: &Pool, target: &Target, limit: Duration) -> Result<()> {
    match tokio::time::timeout(limit, pool.init()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            let _ = pool.quit().await;
            Err(target.error(e, "connecting"))
        }
        Err(_) => {
            let _ = pool.quit().await;
            let msg = format!("redis at {} could not be reached within {limit:?}", target.address);
            Err(Error::new(ErrorKind::Unavailable, msg))
        }
    }
}

/// The address to name in errors, and the passwords to keep out of them.
fn describe(config: &Config) -> Target {
    #[allow(unreachable_patterns)]
    let address = match &config.server {
        ServerConfig::Centralized { server } => server.to_string(),
        ServerConfig::Clustered { hosts, .. } => {
            format!("cluster {}", hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(","))
        }
        ServerConfig::Sentinel { hosts, service_name, .. } => format!(
            "sentinel service {service_name} via {}",
            hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(",")
        ),
        other => format!("{:?}", other.hosts().iter().map(|h| h.to_string()).collect::<Vec<_>>()),
    };
    Target { address, secrets: config.password.iter().cloned().collect() }
}

/// The password part of a URL, if any, to scrub from errors.
fn url_secrets(url: &str) -> Vec<String> {
    let Some(rest) = url.split_once("://").map(|(_, r)| r) else { return Vec::new() };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    match authority.rsplit_once('@') {
        Some((userinfo, _)) => {
            let password = userinfo.split_once(':').map_or(userinfo, |(_, p)| p);
            vec![password.to_string()]
        }
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_password_is_found() {
        assert_eq!(url_secrets("redis://user:pw@127.0.0.1:6379/0"), vec!["pw"]);
        assert_eq!(url_secrets("redis://:pw@127.0.0.1"), vec!["pw"]);
        assert!(url_secrets("redis://127.0.0.1:6379").is_empty());
    }
}
