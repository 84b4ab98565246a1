//! What an adapter implements. Every [`Backend`] is a [`StateStore`] through
//! one blanket impl, which is the single place where keys are validated, the
//! base config is enforced, capabilities are checked, TTLs are rounded, the
//! key prefix is applied and stripped, and each call is traced.
//!
//! A backend therefore only sees valid, prefixed keys, TTLs already rounded
//! to its granularity, and operations its [`Capabilities`] claim.

use std::{borrow::Cow, fmt, future::Future, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures_util::StreamExt;
use tracing::Instrument;

use crate::{
    Capabilities, Capability, ETag, Entry, Error, ErrorKind, Json, Op, PutMode, PutOptions, Result, StateMap,
    StateStore, StoreConfig, WatchEvent, WatchStream,
    config::{GET_DISABLED, REMOVE_DISABLED, SET_DISABLED},
    key::{MAX_KEY_BYTES, join, strip, validate_key},
};

pub use crate::handle::Handle;

/// The longest TTL accepted (what every backend here can represent).
pub const MAX_TTL: Duration = Duration::from_secs(i32::MAX as u64);

/// A storage backend. Implement this; callers use [`StateStore`].
///
/// The methods have the [`StateStore`] names and meanings, one level down:
/// keys arrive valid and prefixed, TTLs rounded, and only for what
/// [`capabilities`](Backend::capabilities) claims; batch reads answer by
/// position. (A type with both traits in scope needs `Backend::put(&store,
/// ..)` to reach these; callers import only `StateStore`.)
///
/// Methods are `async fn` in your impl; they are called through static
/// dispatch, so no future is boxed per call. A backend is a cheap handle on
/// a shared connection: [`with_config`](Backend::with_config) gives another
/// handle on the same connection (what [`StateStore::scoped`] uses).
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
    /// Keys starting with `prefix`, in any order.
    fn list_keys(&self, _prefix: &str) -> impl Future<Output = Result<Vec<String>>> + Send {
        async { Err(unsupported(self, Capability::List)) }
    }
    /// Changes under `prefix`.
    fn watch(&self, _prefix: &str) -> impl Future<Output = Result<WatchStream>> + Send {
        async { Err(unsupported(self, Capability::Watch)) }
    }
    /// Closes connections.
    fn destroy(&self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
}

macro_rules! traced {
    ($store:expr, $name:literal, $body:expr) => {{
        let span = tracing::info_span!(
            $name,
            purista.store.name = Backend::name($store),
            purista.store.type = "StateStore",
        );
        $body.instrument(span).await
    }};
}

fn enabled(on: bool, store: &str, message: &'static str) -> Result<()> {
    if on {
        return Ok(());
    }
    tracing::error!(store, "{message}");
    Err(Error::disabled(message))
}

fn unsupported<B: Backend>(b: &B, capability: Capability) -> Error {
    let store = Backend::name(b);
    match b.unsupported_reason(capability) {
        Some(why) => Error::unsupported(format!("{store} does not support {capability}: {why}")),
        None => Error::unsupported(format!("{store} does not support {capability}")),
    }
}

/// Rounds `ttl` up to a whole multiple of `granularity`.
fn round_up(ttl: Duration, granularity: Duration) -> Duration {
    let (t, g) = (ttl.as_nanos(), granularity.as_nanos().max(1));
    let rounded = t.div_ceil(g) * g;
    Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
}

/// Checks a caller's key: the core's rules, then the backend's reserved
/// substrings in the key as it will be stored (with the prefix).
fn check_key<B: Backend>(b: &B, key: &str) -> Result<()> {
    validate_key(key)?;
    let reserved = Backend::capabilities(b).reserved_in_keys;
    let prefix = &b.config().key_prefix;
    if let Some(r) = reserved.iter().find(|r| prefixed(prefix, key).contains(*r)) {
        let msg = format!("{} keys cannot contain `{r}`", Backend::name(b));
        return Err(Error::new(ErrorKind::InvalidKey, msg).with_key(key));
    }
    Ok(())
}

/// Checks a write's key, value, mode and TTL against the capabilities.
fn check_put<B: Backend>(b: &B, key: &str, value: &Json, options: &mut PutOptions) -> Result<()> {
    check_key(b, key)?;
    let caps = Backend::capabilities(b);
    if let Some(max) = caps.max_value_bytes
        && value.as_bytes().len() > max
    {
        let msg =
            format!("value is {} bytes, {} takes at most {max}", value.as_bytes().len(), Backend::name(b));
        return Err(Error::new(ErrorKind::InvalidValue, msg).with_key(key));
    }
    match &options.mode {
        PutMode::Create if !caps.create_only => {
            return Err(unsupported(b, Capability::CreateOnly));
        }
        PutMode::Update(etag) => check_etag(b, key, Some(etag))?,
        _ => {}
    }
    if let Some(ttl) = options.ttl {
        let Some(granularity) = caps.ttl else {
            return Err(unsupported(b, Capability::Ttl));
        };
        if ttl.is_zero() || ttl > MAX_TTL {
            let msg = format!("ttl must be positive and at most {}s, got {ttl:?}", MAX_TTL.as_secs());
            return Err(Error::new(ErrorKind::InvalidArgument, msg));
        }
        options.ttl = Some(round_up(ttl, granularity));
    }
    Ok(())
}

/// An ETag condition needs the capability, and an empty ETag matches
/// nothing: a conflict here, so that no backend can read it as "no condition".
fn check_etag<B: Backend>(b: &B, key: &str, etag: Option<&ETag>) -> Result<()> {
    match etag {
        Some(_) if !Backend::capabilities(b).etag => Err(unsupported(b, Capability::Etag)),
        Some(etag) if etag.as_str().is_empty() => Err(Error::etag_mismatch(key)),
        _ => Ok(()),
    }
}

/// Errors name the caller's key, without the store's prefix.
fn unprefix(config: &StoreConfig) -> impl Fn(Error) -> Error + '_ {
    |e| e.map_key(|k| strip(&config.key_prefix, k))
}

fn prefixed<'a>(prefix: &str, key: &'a str) -> Cow<'a, str> {
    if prefix.is_empty() { Cow::Borrowed(key) } else { Cow::Owned(join(prefix, key)) }
}

#[async_trait]
impl<B: Backend> StateStore for B {
    fn name(&self) -> &str {
        Backend::name(self)
    }

    fn capabilities(&self) -> Capabilities {
        Backend::capabilities(self)
    }

    async fn get_state(&self, names: &[&str]) -> Result<StateMap> {
        traced!(self, "purista.stateStore.getValue", async {
            let config = self.config();
            enabled(config.enable_get, Backend::name(self), GET_DISABLED)?;
            names.iter().try_for_each(|n| check_key(self, n))?;
            if names.is_empty() {
                return Ok(StateMap::default());
            }
            let values = if config.key_prefix.is_empty() {
                Backend::get_state(self, names).await
            } else {
                let full: Vec<String> = names.iter().map(|n| join(&config.key_prefix, n)).collect();
                let keys: Vec<&str> = full.iter().map(String::as_str).collect();
                Backend::get_state(self, &keys).await
            }
            .map_err(unprefix(config))?;
            if values.len() != names.len() {
                let msg = format!(
                    "{} answered {} values for {} keys",
                    Backend::name(self),
                    values.len(),
                    names.len()
                );
                return Err(Error::new(ErrorKind::Backend, msg));
            }
            let mut map = StateMap::with_capacity_and_hasher(names.len(), Default::default());
            map.extend(names.iter().map(|n| n.to_string()).zip(values));
            Ok(map)
        })
    }

    async fn get_value(&self, name: &str) -> Result<Option<Json>> {
        traced!(self, "purista.stateStore.getValue", async {
            let config = self.config();
            enabled(config.enable_get, Backend::name(self), GET_DISABLED)?;
            check_key(self, name)?;
            Backend::get_value(self, &prefixed(&config.key_prefix, name)).await.map_err(unprefix(config))
        })
    }

    async fn get_entry(&self, name: &str) -> Result<Option<Entry>> {
        traced!(self, "purista.stateStore.getValue", async {
            let config = self.config();
            enabled(config.enable_get, Backend::name(self), GET_DISABLED)?;
            check_key(self, name)?;
            if !Backend::capabilities(self).etag {
                return Err(unsupported(self, Capability::Etag));
            }
            Backend::get_entry(self, &prefixed(&config.key_prefix, name)).await.map_err(unprefix(config))
        })
    }

    async fn set_state(&self, name: &str, value: Json) -> Result<()> {
        put(self, name, value, None).await.map(drop)
    }

    async fn put(&self, name: &str, value: Json, options: PutOptions) -> Result<Option<ETag>> {
        put(self, name, value, Some(options)).await
    }

    async fn remove_state(&self, name: &str) -> Result<()> {
        remove(self, name, None).await
    }

    async fn remove(&self, name: &str, etag: Option<&ETag>) -> Result<()> {
        remove(self, name, etag).await
    }

    async fn transaction(&self, mut ops: Vec<Op>) -> Result<()> {
        traced!(self, "purista.stateStore.transaction", async {
            let config = self.config();
            if !Backend::capabilities(self).transactions {
                return Err(unsupported(self, Capability::Transactions));
            }
            for op in &mut ops {
                match op {
                    Op::Put { key, value, options } => {
                        enabled(config.enable_set, Backend::name(self), SET_DISABLED)?;
                        check_put(self, key, value, options)?;
                    }
                    Op::Remove { key, etag } => {
                        enabled(config.enable_remove, Backend::name(self), REMOVE_DISABLED)?;
                        check_key(self, key)?;
                        check_etag(self, key, etag.as_ref())?;
                    }
                }
                if !config.key_prefix.is_empty() {
                    let key = op.key_mut();
                    key.insert_str(0, &config.key_prefix);
                }
            }
            if ops.is_empty() {
                return Ok(());
            }
            Backend::transaction(self, ops).await.map_err(unprefix(config))
        })
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        traced!(self, "purista.stateStore.listKeys", async {
            let config = self.config();
            enabled(config.enable_get, Backend::name(self), GET_DISABLED)?;
            check_prefix(prefix)?;
            if !Backend::capabilities(self).list {
                return Err(unsupported(self, Capability::List));
            }
            let full = join(&config.key_prefix, prefix);
            let mut keys: Vec<String> = Backend::list_keys(self, &full)
                .await
                .map_err(unprefix(config))?
                .into_iter()
                // Exact prefix semantics, whatever the backend's pattern matching did.
                .filter(|k| k.starts_with(&full))
                .map(|k| strip(&config.key_prefix, k))
                .collect();
            keys.sort_unstable();
            keys.dedup();
            Ok(keys)
        })
    }

    async fn watch(&self, prefix: &str) -> Result<WatchStream> {
        traced!(self, "purista.stateStore.watch", async {
            let config = self.config();
            enabled(config.enable_get, Backend::name(self), GET_DISABLED)?;
            check_prefix(prefix)?;
            if !Backend::capabilities(self).watch {
                return Err(unsupported(self, Capability::Watch));
            }
            let full = join(&config.key_prefix, prefix);
            let stream = Backend::watch(self, &full).await.map_err(unprefix(config))?;
            let key_prefix = config.key_prefix.clone();
            Ok(Box::pin(stream.filter_map(move |event| {
                let out = match event {
                    Ok(e) if !e.key.starts_with(&full) => None,
                    Ok(e) => Some(Ok(WatchEvent { key: strip(&key_prefix, e.key), kind: e.kind })),
                    Err(e) => Some(Err(e.map_key(|k| strip(&key_prefix, k)))),
                };
                std::future::ready(out)
            })) as WatchStream)
        })
    }

    fn scoped(self: Arc<Self>, prefix: &str) -> Arc<dyn StateStore> {
        let config =
            StoreConfig { key_prefix: join(&self.config().key_prefix, prefix), ..self.config().clone() };
        Arc::new(self.with_config(config))
    }

    async fn destroy(&self) -> Result<()> {
        Backend::destroy(self).await
    }
}

// Shared by `set_state` and `put` (and the remove pair) so that neither goes
// through a second boxed future. No options: `set_state`, a plain upsert
// whose ETag is dropped.
async fn put<B: Backend>(
    b: &B,
    name: &str,
    value: Json,
    options: Option<PutOptions>,
) -> Result<Option<ETag>> {
    traced!(b, "purista.stateStore.setValue", async {
        let config = b.config();
        enabled(config.enable_set, Backend::name(b), SET_DISABLED)?;
        let plain = options.is_none();
        let mut options = options.unwrap_or_default();
        check_put(b, name, &value, &mut options)?;
        let key = prefixed(&config.key_prefix, name);
        let written = if plain {
            Backend::set_state(b, &key, value).await.map(|()| None)
        } else {
            Backend::put(b, &key, value, &options).await
        };
        written.map_err(unprefix(config))
    })
}

async fn remove<B: Backend>(b: &B, name: &str, etag: Option<&ETag>) -> Result<()> {
    traced!(b, "purista.stateStore.removeValue", async {
        let config = b.config();
        enabled(config.enable_remove, Backend::name(b), REMOVE_DISABLED)?;
        check_key(b, name)?;
        check_etag(b, name, etag)?;
        let key = prefixed(&config.key_prefix, name);
        Backend::remove(b, &key, etag).await.map_err(unprefix(config))
    })
}

fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.len() > MAX_KEY_BYTES {
        return Err(Error::new(
            ErrorKind::InvalidKey,
            format!("prefix is longer than {MAX_KEY_BYTES} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend whose every read fails naming the (prefixed) key it was given.
    #[derive(Debug, Clone, Default)]
    struct Failing(StoreConfig);

    impl Backend for Failing {
        fn name(&self) -> &str {
            "Failing"
        }
        fn config(&self) -> &StoreConfig {
            &self.0
        }
        fn with_config(&self, config: StoreConfig) -> Self {
            Failing(config)
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities { etag: true, list: true, ..Capabilities::default() }
        }
        async fn get_state(&self, keys: &[&str]) -> Result<Vec<Option<Json>>> {
            Err(Error::new(ErrorKind::InvalidValue, "not JSON").with_key(keys[0]))
        }
        async fn get_entry(&self, key: &str) -> Result<Option<Entry>> {
            Err(Error::new(ErrorKind::InvalidValue, "not JSON").with_key(key))
        }
        async fn put(&self, _: &str, _: Json, _: &PutOptions) -> Result<Option<ETag>> {
            unreachable!("the empty etag is refused before the backend")
        }
        async fn remove(&self, _: &str, _: Option<&ETag>) -> Result<()> {
            unreachable!("the empty etag is refused before the backend")
        }
    }

    #[tokio::test]
    async fn read_errors_name_the_callers_key() {
        let store: Arc<dyn StateStore> = Arc::new(Failing::default()).scoped("svc:1:");
        fn key(r: Result<()>) -> Option<String> {
            r.expect_err("fails").key().map(str::to_owned)
        }
        assert_eq!(key(store.get_value("k").await.map(drop)), Some("k".into()));
        assert_eq!(key(store.get_entry("k").await.map(drop)), Some("k".into()));
        assert_eq!(key(store.get_state(&["k"]).await.map(drop)), Some("k".into()));
    }

    #[tokio::test]
    async fn an_empty_etag_never_reaches_the_backend() {
        let store: Arc<dyn StateStore> = Arc::new(Failing::default()).scoped("svc:1:");
        let empty = ETag::new("");
        let put = store.put("k", Json::from(serde_json::json!(1)), PutOptions::update(empty.clone())).await;
        let err = put.expect_err("conflict");
        assert_eq!((err.kind(), err.key()), (ErrorKind::Conflict, Some("k")));
        let err = store.remove("k", Some(&empty)).await.expect_err("conflict");
        assert_eq!((err.kind(), err.key()), (ErrorKind::Conflict, Some("k")));
    }

    #[test]
    fn ttl_rounds_up_never_down() {
        let s = Duration::from_secs(1);
        assert_eq!(round_up(Duration::from_millis(1), s), s);
        assert_eq!(round_up(Duration::from_millis(1001), s), Duration::from_secs(2));
        assert_eq!(round_up(Duration::from_secs(3), s), Duration::from_secs(3));
        let ms = Duration::from_millis(1);
        assert_eq!(round_up(Duration::from_micros(1500), ms), Duration::from_millis(2));
        assert_eq!(round_up(Duration::from_micros(7), Duration::ZERO), Duration::from_micros(7));
    }
}
