//! `impl StateStore for every Backend`: each call checked, prefixed, traced.

use std::{borrow::Cow, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures_util::StreamExt;
use tracing::Instrument;

use crate::{
    Call, Capabilities, Capability, ETag, Entry, Error, ErrorKind, Json, Op, PutOptions, Result, StateMap,
    StateStore, StoreConfig, WatchEvent, WatchStream,
    config::{GET_DISABLED, REMOVE_DISABLED, SET_DISABLED},
    key::{join, strip},
    lease::{LeaseAnswer, LeaseStep, fence_key, holder_key},
};

use super::{Backend, Immediate, rules::*};

/// Runs a call in its span. The span is skipped when no subscriber wants
/// it (no wrapper entering and leaving it on every poll); then an
/// `async { .. }` body runs inline, in the caller's own state machine rather
/// than in one nested inside it, so `traced!` must be the whole of the
/// function's body (a `return` or `?` in it leaves the function either way).
macro_rules! traced {
    (@span $store:expr, $name:literal) => {
        tracing::info_span!($name, purista.store.name = Backend::name($store), purista.store.type = "StateStore")
    };
    ($store:expr, $name:literal, async $body:block) => {{
        let span = traced!(@span $store, $name);
        if span.is_disabled() { $body } else { async $body.instrument(span).await }
    }};
    ($store:expr, $name:literal, now $body:block) => {{
        let span = traced!(@span $store, $name);
        if span.is_disabled() { $body } else { span.in_scope(|| $body) }
    }};
    ($store:expr, $name:literal, $future:expr) => {{
        let span = traced!(@span $store, $name);
        if span.is_disabled() { $future.await } else { $future.instrument(span).await }
    }};
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
        get_state(self, names).await
    }

    fn get_value<'a>(&'a self, name: &'a str) -> Call<'a, Option<Json>> {
        match Backend::immediate(self) {
            Some(now) => Call::ready(get_value_now(self, now, name)),
            None => Call::boxed(get_value(self, name)),
        }
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

    fn set_state<'a>(&'a self, name: &'a str, value: Json) -> Call<'a, ()> {
        match Backend::immediate(self) {
            Some(now) => Call::ready(set_state_now(self, now, name, value)),
            None => Call::boxed(super::direct::set_state(self, name, value)),
        }
    }

    async fn put(&self, name: &str, value: Json, options: PutOptions) -> Result<Option<ETag>> {
        put(self, name, value, Some(options)).await
    }

    fn remove_state<'a>(&'a self, name: &'a str) -> Call<'a, ()> {
        match Backend::immediate(self) {
            Some(now) => Call::ready(remove_state_now(self, now, name)),
            None => Call::boxed(super::direct::remove_state(self, name)),
        }
    }

    async fn remove(&self, name: &str, etag: Option<&ETag>) -> Result<()> {
        remove(self, name, etag).await
    }

    async fn transaction(&self, mut ops: Vec<Op>) -> Result<()> {
        traced!(self, "purista.stateStore.transaction", async {
            let config = self.config();
            let caps = Backend::capabilities(self);
            if !caps.transactions {
                return Err(unsupported(self, Capability::Transactions));
            }
            if let Some(max) = caps.max_transaction_ops
                && ops.len() > max
            {
                let msg = format!("{} takes at most {max} operations in a transaction", Backend::name(self));
                return Err(Error::new(ErrorKind::InvalidArgument, msg));
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

    async fn increment(&self, name: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        traced!(self, "purista.stateStore.increment", async {
            let config = self.config();
            // It reads as much as it writes.
            enabled(config.enable_get, Backend::name(self), GET_DISABLED)?;
            enabled(config.enable_set, Backend::name(self), SET_DISABLED)?;
            check_key(self, name)?;
            if !Backend::capabilities(self).counters {
                return Err(unsupported(self, Capability::Counters));
            }
            let ttl = check_ttl(self, ttl)?;
            let key = prefixed(&config.key_prefix, name);
            match Backend::combiner(self).filter(|_| config.combine_increments) {
                Some(combiner) => combiner.increment(self, &key, delta, ttl).await,
                None => Backend::increment(self, &key, delta, ttl).await,
            }
            .map_err(unprefix(config))
        })
    }

    async fn lease_step(&self, name: &str, step: LeaseStep) -> Result<LeaseAnswer> {
        traced!(self, "purista.stateStore.lease", async {
            let config = self.config();
            // A step reads, writes and removes.
            enabled(config.enable_get, Backend::name(self), GET_DISABLED)?;
            enabled(config.enable_set, Backend::name(self), SET_DISABLED)?;
            enabled(config.enable_remove, Backend::name(self), REMOVE_DISABLED)?;
            let (fence, holder) = (fence_key(name), holder_key(name));
            check_key(self, &fence)?;
            check_key(self, &holder)?;
            let step = match step {
                LeaseStep::Grant { holder, ttl } => LeaseStep::Grant { holder, ttl: lease_ttl(self, ttl)? },
                LeaseStep::Renew { token, ttl } => LeaseStep::Renew { token, ttl: lease_ttl(self, ttl)? },
                release => release,
            };
            let keys = (prefixed(&config.key_prefix, &fence), prefixed(&config.key_prefix, &holder));
            match Backend::lease_step(self, &keys.0, &keys.1, &step).await.map_err(unprefix(config))? {
                Some(answer) => Ok(answer),
                None => crate::lease::by_transactions(self, name, step).await,
            }
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
        traced!(self, "purista.stateStore.watch", feed(self, prefix, false))
    }

    async fn invalidations(&self, prefix: &str) -> Result<WatchStream> {
        traced!(self, "purista.stateStore.invalidations", feed(self, prefix, true))
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

/// The contract's `get_state` (for the trait and [`direct_calls!`](crate::direct_calls)).
pub async fn get_state<B: Backend>(b: &B, names: &[&str]) -> Result<StateMap> {
    traced!(b, "purista.stateStore.getValue", async {
        let config = b.config();
        enabled(config.enable_get, Backend::name(b), GET_DISABLED)?;
        names.iter().try_for_each(|n| check_key(b, n))?;
        if names.is_empty() {
            return Ok(StateMap::default());
        }
        let values = if config.key_prefix.is_empty() {
            Backend::get_state(b, names).await
        } else {
            let full: Vec<String> = names.iter().map(|n| join(&config.key_prefix, n)).collect();
            let keys: Vec<&str> = full.iter().map(String::as_str).collect();
            Backend::get_state(b, &keys).await
        }
        .map_err(unprefix(config))?;
        if values.len() != names.len() {
            let msg =
                format!("{} answered {} values for {} keys", Backend::name(b), values.len(), names.len());
            return Err(Error::new(ErrorKind::Backend, msg));
        }
        let mut map = StateMap::with_capacity_and_hasher(names.len(), Default::default());
        map.extend(names.iter().map(|n| n.to_string()).zip(values));
        Ok(map)
    })
}

/// The contract's `get_value` (for the trait and [`direct_calls!`](crate::direct_calls)).
pub async fn get_value<B: Backend>(b: &B, name: &str) -> Result<Option<Json>> {
    traced!(b, "purista.stateStore.getValue", async {
        let key = read_key(b, name)?;
        Backend::get_value(b, &key).await.map_err(unprefix(b.config()))
    })
}

/// `get_value` on a store that answers at once.
fn get_value_now<B: Backend>(b: &B, now: &dyn Immediate, name: &str) -> Result<Option<Json>> {
    traced!(b, "purista.stateStore.getValue", now {
        let key = read_key(b, name)?;
        now.get_value_now(&key).map_err(unprefix(b.config()))
    })
}

/// `set_state` on a store that answers at once.
fn set_state_now<B: Backend>(b: &B, now: &dyn Immediate, name: &str, value: Json) -> Result<()> {
    traced!(b, "purista.stateStore.setValue", now {
        let key = write_key(b, name, &value, &mut PutOptions::default())?;
        now.set_state_now(&key, value).map_err(unprefix(b.config()))
    })
}

/// A read's rules (reads enabled, a valid name): the key the backend sees.
#[inline]
fn read_key<'n, B: Backend>(b: &B, name: &'n str) -> Result<Cow<'n, str>> {
    let config = b.config();
    enabled(config.enable_get, Backend::name(b), GET_DISABLED)?;
    check_key(b, name)?;
    Ok(prefixed(&config.key_prefix, name))
}

/// A write's rules (writes enabled, a valid name, value and options, the
/// TTL rounded): the key the backend sees.
#[inline]
fn write_key<'n, B: Backend>(
    b: &B,
    name: &'n str,
    value: &Json,
    options: &mut PutOptions,
) -> Result<Cow<'n, str>> {
    let config = b.config();
    enabled(config.enable_set, Backend::name(b), SET_DISABLED)?;
    check_put(b, name, value, options)?;
    Ok(prefixed(&config.key_prefix, name))
}

// Shared by `set_state` and `put` (and the remove pair) so that neither goes
// through a second boxed future. No options: `set_state`, a plain upsert
// whose ETag is dropped.
pub(crate) async fn put<B: Backend>(
    b: &B,
    name: &str,
    value: Json,
    options: Option<PutOptions>,
) -> Result<Option<ETag>> {
    traced!(b, "purista.stateStore.setValue", async {
        let plain = options.is_none();
        let mut options = options.unwrap_or_default();
        let key = write_key(b, name, &value, &mut options)?;
        let written = if plain {
            Backend::set_state(b, &key, value).await.map(|()| None)
        } else {
            Backend::put(b, &key, value, &options).await
        };
        written.map_err(unprefix(b.config()))
    })
}

pub(crate) async fn remove<B: Backend>(b: &B, name: &str, etag: Option<&ETag>) -> Result<()> {
    traced!(b, "purista.stateStore.removeValue", async {
        let key = remove_key(b, name, etag)?;
        Backend::remove(b, &key, etag).await.map_err(unprefix(b.config()))
    })
}

/// `remove_state` on a store that answers at once.
fn remove_state_now<B: Backend>(b: &B, now: &dyn Immediate, name: &str) -> Result<()> {
    traced!(b, "purista.stateStore.removeValue", now {
        let key = remove_key(b, name, None)?;
        now.remove_state_now(&key).map_err(unprefix(b.config()))
    })
}

/// A remove's rules (removes enabled, a valid name and ETag): the key the
/// backend sees.
#[inline]
fn remove_key<'n, B: Backend>(b: &B, name: &'n str, etag: Option<&ETag>) -> Result<Cow<'n, str>> {
    let config = b.config();
    enabled(config.enable_remove, Backend::name(b), REMOVE_DISABLED)?;
    check_key(b, name)?;
    check_etag(b, name, etag)?;
    Ok(prefixed(&config.key_prefix, name))
}

/// A lease's TTL: required, and checked and rounded as any other.
fn lease_ttl<B: Backend>(b: &B, ttl: Duration) -> Result<Duration> {
    check_ttl(b, Some(ttl))?.ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "a lease needs a TTL"))
}

/// `watch` or `invalidations` (`names_only`): checked, prefixed, and the
/// prefix stripped from what comes back.
async fn feed<B: Backend>(store: &B, prefix: &str, names_only: bool) -> Result<WatchStream> {
    let config = store.config();
    enabled(config.enable_get, Backend::name(store), GET_DISABLED)?;
    check_prefix(prefix)?;
    if !Backend::capabilities(store).watch {
        return Err(unsupported(store, Capability::Watch));
    }
    let full = join(&config.key_prefix, prefix);
    let stream = if names_only {
        Backend::invalidations(store, &full).await
    } else {
        Backend::watch(store, &full).await
    }
    .map_err(unprefix(config))?;
    let key_prefix = config.key_prefix.clone();
    Ok(Box::pin(stream.filter_map(move |event| {
        let out = match event {
            Ok(e) if !e.key.starts_with(&full) => None,
            Ok(e) => Some(Ok(WatchEvent { key: strip(&key_prefix, e.key), kind: e.kind })),
            Err(e) => Some(Err(e.map_key(|k| strip(&key_prefix, k)))),
        };
        std::future::ready(out)
    })) as WatchStream)
}
