//! The contract handlers and services use: [`StateStore`], and its data types.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
    time::SystemTime,
};

use async_trait::async_trait;
use futures_core::Stream;

use crate::{
    Json, Result,
    lease::{LeaseAnswer, LeaseStep},
};

/// One entry per requested name; a missing name maps to `None`.
///
/// A std `HashMap` with a fast seeded hasher (build one with `StateMap::default()`).
pub type StateMap = HashMap<String, Option<Json>, foldhash::fast::RandomState>;

/// Changes under a prefix, as they happen.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

/// Business state that survives restarts and is shared across instances.
///
/// Implement [`Backend`](crate::backend::Backend) rather than this trait: every
/// backend gets this contract from it, with keys validated, the base config
/// ([`StoreConfig`](crate::StoreConfig)) enforced and each call traced, in one
/// place. Typed access (`get::<T>`, `set(&T)`, `update`) is in
/// [`StateStoreExt`](crate::StateStoreExt).
#[async_trait]
pub trait StateStore: Send + Sync + fmt::Debug {
    /// The store's name, as it appears in traces.
    fn name(&self) -> &str;
    /// What this store can do beyond get, set and remove.
    fn capabilities(&self) -> Capabilities;

    /// Reads several names at once (one round trip where the backend can).
    async fn get_state(&self, names: &[&str]) -> Result<StateMap>;
    /// Reads one name. A [`Call`]: no allocation when the store answers at
    /// once (the default store, a near-cache hit).
    fn get_value<'a>(&'a self, name: &'a str) -> Call<'a, Option<Json>>;
    /// Writes a value, replacing any earlier one and its TTL. A [`Call`],
    /// like `get_value`.
    fn set_state<'a>(&'a self, name: &'a str, value: Json) -> Call<'a, ()> {
        Call::boxed(async move { self.put(name, value, PutOptions::default()).await.map(drop) })
    }
    /// Removes a value; removing a missing name is not an error. A
    /// [`Call`], like `get_value`.
    fn remove_state<'a>(&'a self, name: &'a str) -> Call<'a, ()> {
        Call::from(self.remove(name, None))
    }

    /// Reads a value with its ETag and expiry ([`Capabilities::etag`]).
    async fn get_entry(&self, name: &str) -> Result<Option<Entry>>;
    /// Writes with a mode and an optional TTL; returns the new ETag when the
    /// backend reports it without an extra round trip.
    async fn put(&self, name: &str, value: Json, options: PutOptions) -> Result<Option<ETag>>;
    /// Removes a value, only if its ETag still matches when one is given.
    async fn remove(&self, name: &str, etag: Option<&ETag>) -> Result<()>;
    /// Applies writes and removes in order, all or nothing.
    async fn transaction(&self, ops: Vec<Op>) -> Result<()>;
    /// Adds `delta` to the integer stored under `name`, atomically, and
    /// returns the sum ([`Capabilities::counters`]). A missing name counts
    /// as 0 and is created with `ttl`; an existing one keeps its expiry.
    /// Concurrent increments of one name from one instance may be sent as
    /// one ([`Combiner`](crate::backend::Combiner)); each answers the sum it
    /// would have seen alone.
    async fn increment(&self, name: &str, delta: i64, ttl: Option<Duration>) -> Result<i64>;
    /// One step of the [`Lease`](crate::Lease) named `name` ([`Capabilities::etag`],
    /// `create_only`, `ttl` and `transactions`). Core builds it from those;
    /// a backend with a native way overrides
    /// [`Backend::lease_step`](crate::backend::Backend::lease_step).
    async fn lease_step(&self, name: &str, step: LeaseStep) -> Result<LeaseAnswer> {
        crate::lease::by_transactions(self, name, step).await
    }
    /// Keys starting with `prefix`, sorted; expired keys are never listed.
    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>>;
    /// Changes to keys starting with `prefix`, from now on.
    async fn watch(&self, prefix: &str) -> Result<WatchStream>;
    /// Keys starting with `prefix` that may have changed, from now on: what
    /// a cache needs. Like [`watch`](StateStore::watch) (errors say events
    /// may have been lost), but an event may be [`WatchKind::Changed`], with
    /// no value, and several changes may come as one. Defaults to `watch`;
    /// a backend with a cheaper feed of names only overrides it.
    async fn invalidations(&self, prefix: &str) -> Result<WatchStream> {
        self.watch(prefix).await
    }

    /// The same store with every key under `prefix` (added after the store's
    /// own prefix, stripped from keys handed back).
    fn scoped(self: Arc<Self>, prefix: &str) -> Arc<dyn StateStore>;
    /// Releases connections; the store is unusable afterwards.
    async fn destroy(&self) -> Result<()>;
}

/// The future of the contract's hottest calls (`get_value`, `set_state`,
/// `remove_state`): ready at once when the store answered without waiting,
/// so that a call through `dyn StateStore` allocates nothing; else the boxed
/// future every other call of the object-safe contract is.
///
/// On a store that answers at once (the default store, a near-cache hit)
/// the call is made when the method is called, not when it is first
/// polled: a `set_state` built and dropped unawaited has still written.
/// Await every call.
#[must_use = "its answer (and any error) is lost unless it is awaited"]
pub struct Call<'a, T>(CallState<'a, T>);

enum CallState<'a, T> {
    Ready(Option<Result<T>>),
    Boxed(Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>),
}

impl<'a, T> Call<'a, T> {
    /// An answer already known.
    pub fn ready(result: Result<T>) -> Self {
        Call(CallState::Ready(Some(result)))
    }

    /// An answer still to come.
    pub fn boxed(future: impl Future<Output = Result<T>> + Send + 'a) -> Self {
        Call(CallState::Boxed(Box::pin(future)))
    }

    /// The answer, when the store already gave it; else the call, still to
    /// be awaited. Lets a wrapper (a cache) stay ready over a ready store.
    pub fn into_ready(self) -> std::result::Result<Result<T>, Self> {
        match self.0 {
            CallState::Ready(Some(result)) => Ok(result),
            state => Err(Call(state)),
        }
    }
}

/// A future boxed already (what `async_trait` methods return): not boxed again.
impl<'a, T> From<Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>> for Call<'a, T> {
    fn from(future: Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>) -> Self {
        Call(CallState::Boxed(future))
    }
}

// The answer is moved out whole, never pinned.
impl<T> Unpin for Call<'_, T> {}

impl<T> Future for Call<'_, T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        // Both states are `Unpin`: an `Option` and a box.
        match &mut self.get_mut().0 {
            CallState::Ready(result) => match result.take() {
                Some(result) => Poll::Ready(result),
                None => Poll::Ready(Err(crate::Error::new(
                    crate::ErrorKind::InvalidArgument,
                    "a state call was polled again after it completed",
                ))),
            },
            CallState::Boxed(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> fmt::Debug for Call<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            CallState::Ready(_) => "Call::Ready",
            CallState::Boxed(_) => "Call::Boxed",
        })
    }
}

/// The optional parts of the contract a store supports.
///
/// An operation the store lacks fails with [`ErrorKind::Unsupported`](crate::ErrorKind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// `get_entry`, `PutMode::Update` and remove-if-ETag.
    pub etag: bool,
    /// `PutMode::Create` (Dapr's first-write).
    pub create_only: bool,
    /// Per-key TTL, with the granularity TTLs are rounded up to.
    pub ttl: Option<Duration>,
    /// The step an entry's reported `expires_at` is truncated to (Dapr's
    /// `ttlExpireTime` is RFC 3339 in whole seconds: the real expiry lies
    /// anywhere in the second after it). `None`: reported as set.
    pub expiry_precision: Option<Duration>,
    /// Atomic `transaction`.
    pub transactions: bool,
    /// `list_keys`.
    pub list: bool,
    /// `watch`.
    pub watch: bool,
    /// How long a watch may take to report that its server went silent
    /// (frozen, cut off without a reset), during which another server may
    /// take writes it never hears of: a near cache over the store declares
    /// at least this as its bound. `None`: no server to go silent.
    pub watch_stall: Option<Duration>,
    /// `increment` (natively, or by compare-and-swap in core).
    pub counters: bool,
    /// The largest value the backend takes, in bytes of JSON.
    pub max_value_bytes: Option<usize>,
    /// Substrings no key may contain, prefix included (Dapr's `||`): such
    /// keys fail with `InvalidKey` before the backend is called.
    pub reserved_in_keys: &'static [&'static str],
    /// The most operations one `transaction` takes; more fail with
    /// `InvalidArgument` before the backend is called.
    pub max_transaction_ops: Option<usize>,
    /// How long a read may miss an acknowledged write made through another
    /// instance (a near cache's invalidation delay: see
    /// [`CachedStore`](crate::CachedStore)). `None`: every read sees every
    /// acknowledged write. A store always reads its own writes at once.
    pub stale_reads: Option<Duration>,
}

impl Capabilities {
    /// Every capability, TTLs rounded to `ttl_granularity`, no limits.
    #[inline]
    pub fn all(ttl_granularity: Duration) -> Self {
        Capabilities {
            etag: true,
            create_only: true,
            ttl: Some(ttl_granularity),
            transactions: true,
            list: true,
            watch: true,
            counters: true,
            ..Capabilities::default()
        }
    }

    /// Whether the store claims `capability`.
    pub fn has(&self, capability: Capability) -> bool {
        match capability {
            Capability::Etag => self.etag,
            Capability::CreateOnly => self.create_only,
            Capability::Ttl => self.ttl.is_some(),
            Capability::Transactions => self.transactions,
            Capability::List => self.list,
            Capability::Watch => self.watch,
            Capability::Counters => self.counters,
        }
    }

    /// `Unsupported`, naming every one of `needs` that `store` lacks, for a
    /// `feature` built on them (leases, rate limits); checked before any call.
    pub fn require(&self, store: &str, feature: &str, needs: &[Capability]) -> Result<()> {
        let missing: Vec<String> =
            needs.iter().filter(|c| !self.has(**c)).map(Capability::to_string).collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(crate::Error::unsupported(format!("{feature} need {} ({store})", missing.join(", "))))
    }
}

/// One optional part of the contract, as named in [`Capabilities`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// Reads with metadata, ETag updates and removes.
    Etag,
    /// Create-only writes.
    CreateOnly,
    /// Per-key TTL.
    Ttl,
    /// Atomic transactions.
    Transactions,
    /// Listing keys by prefix.
    List,
    /// Watching keys by prefix.
    Watch,
    /// Atomic counters.
    Counters,
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Capability::Etag => "ETags",
            Capability::CreateOnly => "create-only writes",
            Capability::Ttl => "TTL",
            Capability::Transactions => "transactions",
            Capability::List => "listing keys",
            Capability::Watch => "watching keys",
            Capability::Counters => "counters",
        })
    }
}

/// An opaque version of a stored value, for compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ETag(String);

impl ETag {
    /// Wraps a backend's version token.
    pub fn new(tag: impl Into<String>) -> Self {
        ETag(tag.into())
    }
    /// The token as the backend reported it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value with its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The stored document.
    pub value: Json,
    /// Its current version.
    pub etag: ETag,
    /// When it expires, if it has a TTL: never later than the key really
    /// expires (a store that learns a remaining TTL counts it from before it
    /// asked), so a near cache may keep the value until then.
    pub expires_at: Option<SystemTime>,
}

/// How a write treats an existing value (after object_store's `PutMode`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PutMode {
    /// Write whatever is there.
    #[default]
    Upsert,
    /// Write only if the key is absent, else [`Conflict`](crate::ErrorKind::Conflict).
    Create,
    /// Write only if the current ETag matches, else `Conflict`.
    Update(ETag),
}

/// Options of a write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PutOptions {
    /// Upsert, create-only or update-if-ETag.
    pub mode: PutMode,
    /// Expire the value after this long (rounded up to the store's
    /// granularity; zero is an error). `None` removes an earlier TTL.
    pub ttl: Option<Duration>,
}

impl PutOptions {
    /// Create-only.
    pub fn create() -> Self {
        PutOptions { mode: PutMode::Create, ttl: None }
    }
    /// Update only if the value is still at `etag`.
    pub fn update(etag: ETag) -> Self {
        PutOptions { mode: PutMode::Update(etag), ttl: None }
    }
    /// Adds a TTL.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

/// One step of a [`transaction`](StateStore::transaction).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Write `value` under `key`.
    Put { key: String, value: Json, options: PutOptions },
    /// Remove `key`, only if its ETag matches when one is given.
    Remove { key: String, etag: Option<ETag> },
}

impl Op {
    /// An unconditional write.
    pub fn put(key: impl Into<String>, value: Json) -> Self {
        Op::Put { key: key.into(), value, options: PutOptions::default() }
    }
    /// A write with options.
    pub fn put_with(key: impl Into<String>, value: Json, options: PutOptions) -> Self {
        Op::Put { key: key.into(), value, options }
    }
    /// An unconditional remove.
    pub fn remove(key: impl Into<String>) -> Self {
        Op::Remove { key: key.into(), etag: None }
    }
    /// A remove conditioned on `etag`.
    pub fn remove_if(key: impl Into<String>, etag: ETag) -> Self {
        Op::Remove { key: key.into(), etag: Some(etag) }
    }
    /// The key this step touches.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Remove { key, .. } => key,
        }
    }
    pub(crate) fn key_mut(&mut self) -> &mut String {
        match self {
            Op::Put { key, .. } | Op::Remove { key, .. } => key,
        }
    }
}

/// A change seen by [`watch`](StateStore::watch).
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// The key, as the caller names it.
    pub key: String,
    /// What happened.
    pub kind: WatchKind,
}

/// What happened to a watched key.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WatchKind {
    /// A value was written (the ETag when the backend reports it).
    Set { value: Json, etag: Option<ETag> },
    /// The value was removed.
    Removed,
    /// The value's TTL ran out.
    Expired,
    /// The value may have changed in any of these ways (an
    /// [`invalidations`](StateStore::invalidations) feed that names keys only).
    Changed,
}
