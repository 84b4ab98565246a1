//! What an adapter implements. Every [`Backend`] is a [`StateStore`](crate::StateStore) through
//! one blanket impl, which is the single place where keys are validated, the
//! base config is enforced, capabilities are checked, TTLs are rounded, the
//! key prefix is applied and stripped, and each call is traced.
//!
//! A backend therefore only sees valid, prefixed keys, TTLs already rounded
//! to its granularity, and operations its [`Capabilities`] claim.

mod blanket;
mod combine;
mod counter;
pub mod direct;
mod rules;
mod steps;
#[cfg(test)]
mod tests;

use std::{fmt, future::Future, time::Duration};

use crate::{
    Capabilities, Capability, ETag, Entry, Json, Op, PutOptions, Result, StoreConfig, WatchStream,
    lease::{LeaseAnswer, LeaseStep},
};

use rules::unsupported;

pub use crate::handle::Handle;
pub use combine::Combiner;
pub use counter::{add, counter_value};
pub use steps::{Holds, check_steps};

/// A backend that answers reads and plain writes without waiting (an
/// in-process map): through [`Backend::immediate`] the contract's
/// `get_value`, `set_state` and `remove_state` then complete at once, with no boxed future
/// even through `dyn StateStore`. Keys arrive as for [`Backend`].
pub trait Immediate {
    /// [`Backend::get_value`], at once.
    fn get_value_now(&self, key: &str) -> Result<Option<Json>>;
    /// [`Backend::set_state`], at once.
    fn set_state_now(&self, key: &str, value: Json) -> Result<()>;
    /// [`Backend::remove`] without an ETag, at once.
    fn remove_state_now(&self, key: &str) -> Result<()>;
}

/// The longest TTL accepted, on every store: Dapr's `ttlInSeconds` is an
/// int32, and the other backends go further.
pub const MAX_TTL: Duration = Duration::from_secs(i32::MAX as u64);

/// A storage backend. Implement this; callers use [`StateStore`](crate::StateStore).
///
/// The methods have the [`StateStore`](crate::StateStore) names and meanings, one level down:
/// keys arrive valid and prefixed, TTLs rounded, and only for what
/// [`capabilities`](Backend::capabilities) claims; batch reads answer by
/// position. (A type with both traits in scope needs `Backend::put(&store,
/// ..)` to reach these; callers import only `StateStore`.)
///
/// Methods are `async fn` in your impl; they are called through static
/// dispatch, so no future is boxed per call. A backend is a cheap handle on
/// a shared connection: [`with_config`](Backend::with_config) gives another
/// handle on the same connection (what [`StateStore::scoped`](crate::StateStore::scoped) uses).
///
/// A complete (if forgetful) backend: capabilities it does not claim fail
/// with `Unsupported` before it is called.
///
/// ```
/// use std::{collections::HashMap, sync::Arc};
/// use parking_lot::Mutex;
/// use purista_core::{backend::Backend, Capabilities, ETag, Json, PutOptions, Result, StateStore, StoreConfig};
///
/// #[derive(Debug, Clone, Default)]
/// struct MyStore { data: Arc<Mutex<HashMap<String, Json>>>, config: StoreConfig }
///
/// impl Backend for MyStore {
///     fn name(&self) -> &str { "MyStore" }
///     fn config(&self) -> &StoreConfig { &self.config }
///     fn with_config(&self, config: StoreConfig) -> Self { MyStore { config, ..self.clone() } }
///     fn capabilities(&self) -> Capabilities { Capabilities::default() }
///     async fn get_state(&self, keys: &[&str]) -> Result<Vec<Option<Json>>> {
///         let data = self.data.lock();
///         Ok(keys.iter().map(|k| data.get(*k).cloned()).collect())
///     }
///     async fn put(&self, key: &str, value: Json, _options: &PutOptions) -> Result<Option<ETag>> {
///         self.data.lock().insert(key.to_owned(), value);
///         Ok(None)
///     }
///     async fn remove(&self, key: &str, _etag: Option<&ETag>) -> Result<()> {
///         self.data.lock().remove(key);
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<()> {
/// let store: Arc<dyn StateStore> = Arc::new(MyStore::default());
/// store.set_state("a", Json::encode(&1)?).await?;
/// assert_eq!(store.get_value("a").await?, Some(Json::encode(&1)?));
/// # Ok(()) }
/// ```
pub trait Backend: Sized + Send + Sync + fmt::Debug + 'static {
    /// The store's name in traces (`RedisStateStore` ...).
    fn name(&self) -> &str;
    /// The base config the core enforces for this backend.
    fn config(&self) -> &StoreConfig;
    /// Another handle on the same connection and data, with `config`.
    fn with_config(&self, config: StoreConfig) -> Self;
    /// What the backend supports beyond read, write and delete.
    fn capabilities(&self) -> Capabilities;
    /// Why a capability is missing, when it depends on the server or its
    /// settings ("nats-server 2.10 has no per-message TTL"); put in the
    /// `Unsupported` error.
    fn unsupported_reason(&self, _capability: Capability) -> Option<String> {
        None
    }

    /// The same store when it answers without waiting ([`Immediate`]).
    fn immediate(&self) -> Option<&dyn Immediate> {
        None
    }

    /// Another handle for the store's own background work (a [`Combiner`]'s
    /// sender), holding no share of the connection: it must neither keep
    /// the connection open after the user's last `destroy` nor close it.
    /// The default is [`with_config`](Backend::with_config); a backend that
    /// counts shares ([`Handle`]) gives a [`Handle::detached`] one.
    fn detached(&self) -> Self {
        self.with_config(self.config().clone())
    }

    /// Where concurrent increments of one key from this instance wait to be
    /// sent as one ([`Combiner`]); `None`, the default, sends each alone. A
    /// network backend returns the one its handles share.
    fn combiner(&self) -> Option<&Combiner> {
        None
    }

    /// Values of `keys`, in the same order, `None` where missing.
    fn get_state(&self, keys: &[&str]) -> impl Future<Output = Result<Vec<Option<Json>>>> + Send;
    /// The value of one key (override when one key is cheaper than a batch).
    fn get_value(&self, key: &str) -> impl Future<Output = Result<Option<Json>>> + Send {
        async move { Ok(Backend::get_state(self, &[key]).await?.pop().flatten()) }
    }
    /// A value with ETag and expiry (stores with the `etag` capability).
    fn get_entry(&self, _key: &str) -> impl Future<Output = Result<Option<Entry>>> + Send {
        async { Err(unsupported(self, Capability::Etag)) }
    }
    /// Writes `value`; `options.ttl` is already rounded and positive.
    fn put(
        &self,
        key: &str,
        value: Json,
        options: &PutOptions,
    ) -> impl Future<Output = Result<Option<ETag>>> + Send;
    /// An upsert without TTL whose ETag nobody asked for (`set_state`, the
    /// common write): override when that is cheaper than [`put`](Backend::put).
    fn set_state(&self, key: &str, value: Json) -> impl Future<Output = Result<()>> + Send {
        async move { Backend::put(self, key, value, &PutOptions::default()).await.map(drop) }
    }
    /// Deletes `key` (a missing key is fine unless `etag` is given).
    fn remove(&self, key: &str, etag: Option<&ETag>) -> impl Future<Output = Result<()>> + Send;
    /// Applies `ops` atomically; a conflict names its key.
    fn transaction(&self, _ops: Vec<Op>) -> impl Future<Output = Result<()>> + Send {
        async { Err(unsupported(self, Capability::Transactions)) }
    }
    /// Adds `delta` to the counter under `key` (created with `ttl`, already
    /// rounded, when missing) and returns the sum. The default reads and
    /// writes by ETag, retrying on conflicts; override it with the backend's
    /// own atomic increment.
    fn increment(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<i64>> + Send {
        counter::by_compare_and_swap(self, key, delta, ttl)
    }
    /// A [`LeaseStep`] done natively on the keys `fence` and `holder`
    /// (prefixed; formats in [`crate::lease`]), TTLs rounded; `None`, the
    /// default, lets core build it from ETags and transactions.
    fn lease_step(
        &self,
        _fence: &str,
        _holder: &str,
        _step: &LeaseStep,
    ) -> impl Future<Output = Result<Option<LeaseAnswer>>> + Send {
        async { Ok(None) }
    }
    /// Keys starting with `prefix`, in any order.
    fn list_keys(&self, _prefix: &str) -> impl Future<Output = Result<Vec<String>>> + Send {
        async { Err(unsupported(self, Capability::List)) }
    }
    /// Changes under `prefix`.
    fn watch(&self, _prefix: &str) -> impl Future<Output = Result<WatchStream>> + Send {
        async { Err(unsupported(self, Capability::Watch)) }
    }
    /// Keys under `prefix` that may have changed (events may be
    /// [`WatchKind::Changed`](crate::WatchKind::Changed)); defaults to
    /// [`watch`](Backend::watch). Override when names alone come cheaper.
    fn invalidations(&self, prefix: &str) -> impl Future<Output = Result<WatchStream>> + Send {
        Backend::watch(self, prefix)
    }
    /// Closes connections.
    fn destroy(&self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
}
