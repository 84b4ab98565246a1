//! The store handle and its `Backend` impl: each hook hands over to the
//! module of its concern.

use std::{fmt, sync::Arc, time::Duration};

use fred::{clients::Pool, interfaces::ClientLike};
use purista_core::{
    Capabilities, ETag, Entry, Json, Op, PutOptions, Result, StoreConfig, WatchStream,
    backend::{Backend, Combiner, Handle},
    lease::{LeaseAnswer, LeaseStep},
};

use crate::{
    counter, entries,
    error::Target,
    lease, list, redirect,
    replicas::Replicas,
    sentinel, transaction,
    watch::{self, CacheFeed, Watchers, Watches},
};

/// The name this store has in traces.
pub const STORE_NAME: &str = "RedisStateStore";

/// The state store on Redis. Cheap to clone: clones and scoped stores are
/// handles on the same connections, and `destroy` releases the handle it is
/// called on (the connections close with the last one).
#[derive(Clone)]
pub struct RedisStateStore {
    inner: Arc<Inner>,
    config: StoreConfig,
    /// This handle's share of the connections (clones and scoped stores are
    /// handles too): `destroy` closes them with the last one.
    handle: Handle,
}

struct Inner {
    pool: Pool,
    target: Target,
    cluster: bool,
    /// The database index (0 unless the URL or config selects another).
    db: u8,
    /// How long a command refused by a slot migration is sent again (the
    /// command timeout).
    redirect_budget: Duration,
    /// Whether `destroy` closes the connections (false for a caller's client).
    owned: bool,
    /// `WAIT` for replicas after each write.
    replicas: Option<Replicas>,
    /// Sentinel `+switch-master` follower.
    follower: parking_lot::Mutex<Option<sentinel::Follower>>,
    /// Whether upserts must go through the write script so that watchers get
    /// their values.
    watchers: Watchers,
    /// The running watchers, stopped by `destroy`.
    watches: Watches,
    /// What `invalidations` follows.
    cache_feed: CacheFeed,
    /// Concurrent increments of one key, sent as one.
    counters: Combiner,
}

impl fmt::Debug for RedisStateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStateStore")
            .field("address", &self.inner.target.address)
            .field("cluster", &self.inner.cluster)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RedisStateStore {
    /// A store on a connected pool; follows Sentinel failovers when the pool
    /// goes through Sentinel.
    pub(crate) async fn open(
        pool: Pool,
        config: StoreConfig,
        target: Target,
        owned: bool,
        replicas: Option<Replicas>,
        cache_feed: CacheFeed,
    ) -> Self {
        let cluster = pool.next().is_clustered();
        let db = pool.next().client_config().database.unwrap_or(0);
        let redirect_budget = match pool.next().perf_config().default_command_timeout {
            Duration::ZERO => crate::DEFAULT_COMMAND_TIMEOUT,
            timeout => timeout,
        };
        let follower = parking_lot::Mutex::new(sentinel::follow(&pool).await);
        let inner = Inner {
            pool,
            target,
            cluster,
            db,
            redirect_budget,
            owned,
            replicas,
            follower,
            watchers: Watchers::default(),
            watches: Watches::default(),
            cache_feed,
            counters: Combiner::default(),
        };
        RedisStateStore { inner: Arc::new(inner), config, handle: Handle::new() }
    }

    /// Another handle on the same connection, with `config` (its own enable
    /// flags and key prefix).
    pub fn with_config(&self, config: StoreConfig) -> Self {
        RedisStateStore { inner: Arc::clone(&self.inner), config, handle: self.handle.another() }
    }

    /// The fred pool, for commands this crate does not cover.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// Whether the store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.cluster
    }

    /// A copy for the store's own tasks, holding no share of the connections.
    pub(crate) fn detached(&self) -> RedisStateStore {
        RedisStateStore {
            inner: Arc::clone(&self.inner),
            config: self.config.clone(),
            handle: Handle::detached(),
        }
    }

    pub(crate) fn target(&self) -> &Target {
        &self.inner.target
    }

    pub(crate) fn db(&self) -> u8 {
        self.inner.db
    }

    /// Runs a fred call, and again while a slot migration refuses it
    /// ([`redirect`]).
    pub(crate) async fn resend<T, F, Fut>(&self, call: F) -> std::result::Result<T, fred::error::Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, fred::error::Error>>,
    {
        redirect::resend(self.inner.redirect_budget, call).await
    }

    pub(crate) fn replicas(&self) -> Option<Replicas> {
        self.inner.replicas
    }

    pub(crate) fn watchers(&self) -> &Watchers {
        &self.inner.watchers
    }

    pub(crate) fn watches(&self) -> &Watches {
        &self.inner.watches
    }

    pub(crate) fn cache_feed(&self) -> CacheFeed {
        self.inner.cache_feed
    }

    /// A fred error of `what` (a command) as the store reports it.
    pub(crate) fn err(&self, e: fred::error::Error, what: &str) -> purista_core::Error {
        self.inner.target.error(e, what)
    }
}

// The hottest calls without the boxed future of `dyn StateStore`.
purista_core::direct_calls!(RedisStateStore);

impl Backend for RedisStateStore {
    fn name(&self) -> &str {
        STORE_NAME
    }

    fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn with_config(&self, config: StoreConfig) -> Self {
        RedisStateStore::with_config(self, config)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Redis's string limit (proto-max-bulk-len default).
            max_value_bytes: Some(512 * 1024 * 1024),
            watch_stall: Some(crate::watch::STALL_REPORTED),
            ..Capabilities::all(Duration::from_millis(1))
        }
    }

    async fn get_state(&self, keys: &[&str]) -> Result<Vec<Option<Json>>> {
        entries::get_state(self, keys).await
    }

    async fn get_value(&self, key: &str) -> Result<Option<Json>> {
        entries::get_value(self, key).await
    }

    async fn get_entry(&self, key: &str) -> Result<Option<Entry>> {
        entries::get_entry(self, key).await
    }

    async fn put(&self, key: &str, value: Json, options: &PutOptions) -> Result<Option<ETag>> {
        entries::put(self, key, value, options).await
    }

    async fn set_state(&self, key: &str, value: Json) -> Result<()> {
        entries::set_state(self, key, value).await
    }

    async fn remove(&self, key: &str, etag: Option<&ETag>) -> Result<()> {
        entries::remove(self, key, etag).await
    }

    async fn transaction(&self, ops: Vec<Op>) -> Result<()> {
        transaction::apply(self, ops).await
    }

    async fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        counter::increment(self, key, delta, ttl).await
    }

    fn combiner(&self) -> Option<&Combiner> {
        Some(&self.inner.counters)
    }

    fn detached(&self) -> Self {
        RedisStateStore::detached(self)
    }

    async fn lease_step(&self, fence: &str, holder: &str, step: &LeaseStep) -> Result<Option<LeaseAnswer>> {
        lease::step(self, fence, holder, step).await
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        list::list_keys(self, prefix).await
    }

    async fn watch(&self, prefix: &str) -> Result<WatchStream> {
        watch::watch(self, prefix).await
    }

    async fn invalidations(&self, prefix: &str) -> Result<WatchStream> {
        watch::invalidations(self, prefix).await
    }

    async fn destroy(&self) -> Result<()> {
        // Only this handle's share: other handles keep the connections.
        if !self.handle.release() {
            return Ok(());
        }
        drop(self.inner.follower.lock().take());
        self.inner.watches.close();
        if self.inner.owned {
            self.inner.pool.quit().await.map_err(|e| self.err(e, "QUIT"))?;
        }
        Ok(())
    }
}
