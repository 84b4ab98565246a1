//! A near cache: reads answered from the instance's own memory, kept
//! coherent by the store's change feed.
//!
//! [`CachedStore`] wraps any store and is a [`StateStore`] itself, so handlers
//! and services use it unchanged:
//!
//! ```
//! use std::sync::Arc;
//! use purista_core::{CacheOptions, CachedStore, DefaultStateStore, StateStore, StateStoreExt};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> purista_core::Result<()> {
//! let store: Arc<dyn StateStore> = Arc::new(DefaultStateStore::new());
//! let cached = CachedStore::new(store, CacheOptions::default()).await?;
//! cached.set("session:1", &"alice").await?;
//! // The first read asks the store, the second is answered from memory.
//! assert_eq!(cached.get::<String>("session:1").await?.as_deref(), Some("alice"));
//! assert_eq!(cached.get::<String>("session:1").await?.as_deref(), Some("alice"));
//! let metrics = cached.metrics();
//! assert_eq!((metrics.misses, metrics.hits), (1, 1));
//! // The store declares that reads may lag other instances' writes.
//! assert!(cached.capabilities().stale_reads.is_some());
//! # Ok(()) }
//! ```
//!
//! # What is cached
//! `get_value` and `get_state` answers, "missing" included, bounded by
//! [`CacheOptions::max_entries`] and [`CacheOptions::max_bytes`] (TinyLFU
//! admission, by `moka`). `get_state` is answered from memory only when every
//! name is cached; otherwise the store answers all names in one call, as one
//! point in time where the store gives that.
//! `get_entry`, compare-and-swap writes, ETag removes, transactions,
//! increments, `list_keys` and `watch` always go to the store.
//!
//! # Guarantees
//! - **Own writes at once.** Every write through an instance drops the keys it
//!   touched before it returns (failed writes too: they may have landed), and
//!   a read that raced the write cannot cache what it read before it.
//! - **Other instances' writes within the feed delay.** The cache follows the
//!   store's change feed ([`invalidations("")`](StateStore::invalidations),
//!   its `watch` unless the store has a cheaper feed of names) and drops each
//!   reported key. The store
//!   declares [`Capabilities::stale_reads`] = [`CacheOptions::max_feed_delay`]
//!   or the store's [`Capabilities::watch_stall`], whichever is longer,
//!   and the behaviour suite then skips the cases that need every read fresh.
//! - **Interruptions empty the cache.** An error on the feed (lag, reconnect
//!   gap, lost connection) or its end empties the cache and stops hits until
//!   the feed is subscribed again (with backoff); meanwhile every read goes to
//!   the store and nothing is cached.
//! - **TTLs.** On a store with ETags a miss reads through `get_entry`, and the
//!   entry expires at its key's expiry (or after `max_age`, if sooner): an
//!   entry never outlives its key. A store with TTLs but no ETags gives no
//!   expiry on reads, so there only "missing" answers are cached.
//! - **Stores without a change feed** (Dapr): the cache is off, every call goes
//!   to the store, unless [`CacheOptions::max_age`] is set: then entries are
//!   served for at most that long, and `stale_reads` says so. A store whose
//!   reads are disabled by config (`enable_get = false`) is never cached.
//! - **Scoped views** ([`scoped`](StateStore::scoped)) share the cache and the
//!   feed of the store they come from, under their prefixed keys, so a write
//!   through one view is seen at once through the others.

mod feed;
mod metrics;
mod near;
mod options;

use std::{
    borrow::Cow,
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::task::AbortHandle;

pub use metrics::CacheMetrics;
use near::Near;
pub use options::CacheOptions;

use crate::{
    Call, Capabilities, ETag, Entry, Error, ErrorKind, Json, Op, PutOptions, Result, StateMap, StateStore,
    WatchStream,
    handle::Handle,
    lease::{LeaseAnswer, LeaseStep, fence_key, holder_key},
    validate_key,
};

/// A store with a near cache in front of it (see the [module docs](crate::cache)).
///
/// Build it with [`CachedStore::new`]; clones of the `Arc` and its
/// [`scoped`](StateStore::scoped) views share one cache.
pub struct CachedStore {
    /// The store (or its scoped view) every call that is not a hit goes to.
    inner: Arc<dyn StateStore>,
    shared: Arc<Shared>,
    /// Put before a name to make its cache key (a scoped view's prefixes).
    prefix: String,
    handle: Handle,
}

/// What the root store and its scoped views share.
#[derive(Debug)]
struct Shared {
    /// `None`: the cache is off and every call goes to the store.
    near: Option<Arc<Near>>,
    max_age: Option<Duration>,
    stale_reads: Option<Duration>,
    /// Misses read through `get_entry`, which carries the key's expiry.
    read_entries: bool,
    /// Values may be cached without knowing their expiry (the store has no TTLs).
    values_without_expiry: bool,
    feed: Mutex<Option<AbortHandle>>,
}

impl Shared {
    fn stop(&self) {
        if let Some(feed) = self.feed.lock().take() {
            feed.abort();
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .field("prefix", &self.prefix)
            .field("cache", &self.shared.near)
            .finish()
    }
}

impl CachedStore {
    /// Puts a near cache in front of `inner`. On a store that can watch, it
    /// first subscribes to the store's change feed, and fails if the store
    /// cannot be reached. Without a feed (or with reads disabled by config)
    /// the cache is off unless `options.max_age` is set.
    pub async fn new(inner: Arc<dyn StateStore>, options: CacheOptions) -> Result<Arc<CachedStore>> {
        options.check()?;
        let caps = inner.capabilities();
        let mut feed = None;
        let mut stale_reads = options.max_age;
        if caps.watch {
            match inner.invalidations("").await {
                Ok(stream) => {
                    feed = Some(stream);
                    // A feed is only as prompt as the store reports its
                    // server silent; one that lags longer than max_age is
                    // cut short by it.
                    let delay = options.max_feed_delay.max(caps.watch_stall.unwrap_or_default());
                    stale_reads = Some(options.max_age.map_or(delay, |age| age.min(delay)));
                }
                // Reads disabled by config (watching is a read) or no feed after all.
                Err(e) if matches!(e.kind(), ErrorKind::Disabled | ErrorKind::Unsupported) => {
                    tracing::warn!(store = inner.name(), reason = %e, "the store's change feed cannot be followed");
                    stale_reads = None;
                }
                Err(e) => return Err(e),
            }
        }
        let near = stale_reads.map(|_| Arc::new(Near::new(&options)));
        if near.is_none() {
            tracing::info!(
                store = inner.name(),
                "near cache off: the store has no change feed and no max_age is set"
            );
        }
        let task = match (&near, feed) {
            (Some(near), Some(stream)) => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    let msg =
                        "a near cache follows its store's change feed on a Tokio runtime: none is running";
                    return Err(Error::new(ErrorKind::Unavailable, msg));
                };
                Some(runtime.spawn(feed::run(inner.clone(), near.clone(), stream)).abort_handle())
            }
            _ => None,
        };
        let shared = Shared {
            near,
            max_age: options.max_age,
            stale_reads,
            read_entries: caps.etag,
            values_without_expiry: caps.ttl.is_none(),
            feed: Mutex::new(task),
        };
        Ok(Arc::new(CachedStore {
            inner,
            shared: Arc::new(shared),
            prefix: String::new(),
            handle: Handle::new(),
        }))
    }

    /// The cache's counters now (all zero when the cache is off).
    pub fn metrics(&self) -> CacheMetrics {
        self.shared.near.as_ref().map(|n| n.metrics()).unwrap_or_default()
    }

    /// Whether hits are served now: false when the cache is off, and while
    /// its change feed is interrupted.
    pub fn serving(&self) -> bool {
        self.shared.near.as_ref().is_some_and(|n| n.serving())
    }

    fn key<'a>(&self, name: &'a str) -> Cow<'a, str> {
        if self.prefix.is_empty() {
            Cow::Borrowed(name)
        } else {
            Cow::Owned(format!("{}{name}", self.prefix))
        }
    }

    /// The inner store's write of `name`, then the cached answer dropped:
    /// ready at once when the inner store answered at once.
    fn written<'a>(&'a self, name: &'a str, write: Call<'a, ()>) -> Call<'a, ()> {
        match write.into_ready() {
            Ok(result) => {
                self.invalidate(&[name]);
                Call::ready(result)
            }
            Err(write) => Call::boxed(async move {
                let result = write.await;
                self.invalidate(&[name]);
                result
            }),
        }
    }

    fn invalidate(&self, names: &[&str]) {
        if let Some(near) = &self.shared.near {
            names.iter().for_each(|n| near.invalidate(&self.key(n)));
        }
    }

    /// How long an answer read with this expiry may be cached; `None`: not at all.
    fn life(&self, expires_at: Option<SystemTime>) -> Option<Option<Duration>> {
        let Some(at) = expires_at else { return Some(self.shared.max_age) };
        let left = at.duration_since(SystemTime::now()).ok().filter(|d| !d.is_zero())?;
        Some(Some(self.shared.max_age.map_or(left, |age| age.min(left))))
    }

    /// A hit, answered at once (`None`: ask the store).
    fn hit(&self, near: &Near, name: &str) -> Option<Option<Json>> {
        // A cached key was valid where it was read; this name must be too.
        validate_key(name).ok()?;
        let hit = near.lookup(&self.key(name))?;
        metrics_add(near, |c| &c.hits, 1);
        Some(hit)
    }

    /// A miss: read from the store, and cached if nothing changed meanwhile.
    async fn read(&self, near: &Near, name: &str) -> Result<Option<Json>> {
        let key = self.key(name);
        let Some(ticket) = near.ticket(&key) else {
            metrics_add(near, |c| &c.bypassed, 1);
            return self.inner.get_value(name).await;
        };
        metrics_add(near, |c| &c.misses, 1);
        if self.shared.read_entries {
            let entry = self.inner.get_entry(name).await?;
            let (value, expires_at) = match entry {
                Some(e) => (Some(e.value), e.expires_at),
                None => (None, None),
            };
            if let Some(life) = self.life(expires_at) {
                near.admit(&key, ticket, value.clone(), life);
            }
            Ok(value)
        } else {
            let value = self.inner.get_value(name).await?;
            if value.is_none() || self.shared.values_without_expiry {
                near.admit(&key, ticket, value.clone(), self.shared.max_age);
            }
            Ok(value)
        }
    }

    async fn read_many(&self, near: &Near, names: &[&str]) -> Result<StateMap> {
        let mut map = StateMap::with_capacity_and_hasher(names.len(), Default::default());
        let mut all_cached = names.iter().all(|n| validate_key(n).is_ok());
        for name in names {
            if !all_cached {
                break;
            }
            match near.lookup(&self.key(name)) {
                Some(hit) => drop(map.insert((*name).to_owned(), hit)),
                None => all_cached = false,
            }
        }
        if all_cached {
            metrics_add(near, |c| &c.hits, names.len());
            return Ok(map);
        }
        let tickets: Vec<_> = names.iter().map(|n| near.ticket(&self.key(n))).collect();
        let answer = self.inner.get_state(names).await?;
        let bypassed = tickets.iter().filter(|t| t.is_none()).count();
        metrics_add(near, |c| &c.bypassed, bypassed);
        metrics_add(near, |c| &c.misses, names.len() - bypassed);
        for (name, ticket) in names.iter().zip(tickets) {
            let (Some(ticket), Some(value)) = (ticket, answer.get(*name)) else { continue };
            if value.is_none() || self.shared.values_without_expiry {
                near.admit(&self.key(name), ticket, value.clone(), self.shared.max_age);
            }
        }
        Ok(answer)
    }
}

fn metrics_add(near: &Near, counter: impl Fn(&metrics::Counters) -> &std::sync::atomic::AtomicU64, n: usize) {
    metrics::Counters::add(counter(&near.counters), n);
}

#[async_trait]
impl StateStore for CachedStore {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        let inner = self.inner.capabilities();
        // A cache over a cache (or any store that already lags) adds its delay.
        let stale_reads = match (inner.stale_reads, self.shared.stale_reads) {
            (Some(below), Some(here)) => Some(below + here),
            (below, here) => below.or(here),
        };
        Capabilities { stale_reads, ..inner }
    }

    async fn get_state(&self, names: &[&str]) -> Result<StateMap> {
        match &self.shared.near {
            Some(near) if !names.is_empty() => self.read_many(near, names).await,
            _ => self.inner.get_state(names).await,
        }
    }

    fn get_value<'a>(&'a self, name: &'a str) -> Call<'a, Option<Json>> {
        match &self.shared.near {
            Some(near) => match self.hit(near, name) {
                Some(hit) => Call::ready(Ok(hit)),
                None => Call::boxed(self.read(near, name)),
            },
            None => self.inner.get_value(name),
        }
    }

    fn set_state<'a>(&'a self, name: &'a str, value: Json) -> Call<'a, ()> {
        self.written(name, self.inner.set_state(name, value))
    }

    fn remove_state<'a>(&'a self, name: &'a str) -> Call<'a, ()> {
        self.written(name, self.inner.remove_state(name))
    }

    async fn get_entry(&self, name: &str) -> Result<Option<Entry>> {
        // Callers want the current ETag (for compare-and-swap): never cached.
        self.inner.get_entry(name).await
    }

    async fn put(&self, name: &str, value: Json, options: PutOptions) -> Result<Option<ETag>> {
        let result = self.inner.put(name, value, options).await;
        self.invalidate(&[name]);
        result
    }

    async fn remove(&self, name: &str, etag: Option<&ETag>) -> Result<()> {
        let result = self.inner.remove(name, etag).await;
        self.invalidate(&[name]);
        result
    }

    async fn transaction(&self, ops: Vec<Op>) -> Result<()> {
        let keys: Vec<String> = ops.iter().map(|op| op.key().to_owned()).collect();
        let result = self.inner.transaction(ops).await;
        self.invalidate(&keys.iter().map(String::as_str).collect::<Vec<_>>());
        result
    }

    async fn increment(&self, name: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        let result = self.inner.increment(name, delta, ttl).await;
        self.invalidate(&[name]);
        result
    }

    /// The store's own (native where it has one), then both keys dropped.
    async fn lease_step(&self, name: &str, step: LeaseStep) -> Result<LeaseAnswer> {
        let result = self.inner.lease_step(name, step).await;
        self.invalidate(&[&fence_key(name), &holder_key(name)]);
        result
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list_keys(prefix).await
    }

    async fn watch(&self, prefix: &str) -> Result<WatchStream> {
        self.inner.watch(prefix).await
    }

    async fn invalidations(&self, prefix: &str) -> Result<WatchStream> {
        self.inner.invalidations(prefix).await
    }

    fn scoped(self: Arc<Self>, prefix: &str) -> Arc<dyn StateStore> {
        Arc::new(CachedStore {
            inner: self.inner.clone().scoped(prefix),
            shared: self.shared.clone(),
            prefix: format!("{}{prefix}", self.prefix),
            handle: self.handle.another(),
        })
    }

    async fn destroy(&self) -> Result<()> {
        if self.handle.release() {
            // The last handle: nothing will read the cache again.
            self.shared.stop();
        }
        self.inner.destroy().await
    }
}
