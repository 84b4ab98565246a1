//! The three steps a lease takes on the store, and how core builds them from
//! ETags, create-only writes and transactions for a backend with no native
//! way ([`Backend::lease_step`](crate::backend::Backend::lease_step)).

use std::time::{Duration, SystemTime};

use futures_util::future::join;
use serde::{Deserialize, Serialize};

use crate::{Error, ErrorKind, Json, Op, PutMode, PutOptions, Result, StateStore};

/// How often a grant retries after losing a race for the fence.
const GRANT_ATTEMPTS: usize = 16;

/// One step of a lease named `n`, on its keys `{n}:fence` and `{n}:holder`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseStep {
    /// Unless the holder key lives: move the fence from `t` to `t + 1` and
    /// create the holder key `{"token": t + 1, "holder": holder}` with `ttl`.
    Grant { holder: String, ttl: Duration },
    /// While the holder key holds `token`: give it `ttl` from now.
    Renew { token: u64, ttl: Duration },
    /// While the holder key holds `token`: remove it.
    Release { token: u64 },
}

/// What a [`LeaseStep`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseAnswer {
    /// Granted, with this token.
    Granted { token: u64 },
    /// Not granted: someone holds it, until about `expires_at` if known.
    Held { expires_at: Option<SystemTime> },
    /// Renewed or released.
    Done,
    /// The token no longer holds the lease: nothing was changed.
    Lost,
}

/// What the holder key stores (its JSON is part of the stored format).
#[derive(Serialize, Deserialize)]
struct Holder {
    token: u64,
    holder: String,
}

/// The key holding the last token granted for lease `name`.
pub fn fence_key(name: &str) -> String {
    format!("{{{name}}}:fence")
}

/// The key present while lease `name` is held.
pub fn holder_key(name: &str) -> String {
    format!("{{{name}}}:holder")
}

/// `step`, from ETags, create-only writes and transactions.
pub(crate) async fn by_transactions<S: StateStore + ?Sized>(
    store: &S,
    name: &str,
    step: LeaseStep,
) -> Result<LeaseAnswer> {
    match step {
        LeaseStep::Grant { holder, ttl } => grant(store, name, holder, ttl).await,
        LeaseStep::Renew { token, ttl } => {
            let key = holder_key(name);
            let Some(entry) = store.get_entry(&key).await? else { return Ok(LeaseAnswer::Lost) };
            if holder_token(&key, &entry.value)? != token {
                return Ok(LeaseAnswer::Lost);
            }
            match store.put(&key, entry.value, PutOptions::update(entry.etag).ttl(ttl)).await {
                Ok(_) => Ok(LeaseAnswer::Done),
                Err(e) if e.kind() == ErrorKind::Conflict => Ok(LeaseAnswer::Lost),
                Err(e) => Err(e),
            }
        }
        LeaseStep::Release { token } => {
            let key = holder_key(name);
            let Some(entry) = store.get_entry(&key).await? else { return Ok(LeaseAnswer::Lost) };
            if holder_token(&key, &entry.value)? != token {
                return Ok(LeaseAnswer::Lost);
            }
            match store.remove(&key, Some(&entry.etag)).await {
                Ok(()) => Ok(LeaseAnswer::Done),
                Err(e) if e.kind() == ErrorKind::Conflict => Ok(LeaseAnswer::Lost),
                Err(e) => Err(e),
            }
        }
    }
}

async fn grant<S: StateStore + ?Sized>(
    store: &S,
    name: &str,
    holder: String,
    ttl: Duration,
) -> Result<LeaseAnswer> {
    let (fence, holder_key) = (fence_key(name), holder_key(name));
    for _ in 0..GRANT_ATTEMPTS {
        // Both reads at once: one round trip of latency.
        let (held, last) = join(store.get_entry(&holder_key), store.get_entry(&fence)).await;
        if let Some(entry) = held? {
            return Ok(LeaseAnswer::Held { expires_at: entry.expires_at });
        }
        let (token, mode) = match last? {
            None => (1, PutMode::Create),
            Some(e) => (fence_token(&fence, &e.value)?.saturating_add(1), PutMode::Update(e.etag)),
        };
        let value = Json::encode(&Holder { token, holder: holder.clone() })?;
        let ops = vec![
            Op::put_with(&fence, Json::encode(&token)?, PutOptions { mode, ttl: None }),
            Op::put_with(&holder_key, value, PutOptions::create().ttl(ttl)),
        ];
        match store.transaction(ops).await {
            Ok(()) => return Ok(LeaseAnswer::Granted { token }),
            Err(e) if e.kind() == ErrorKind::Conflict => tokio::task::yield_now().await,
            Err(e) => return Err(e),
        }
    }
    Ok(LeaseAnswer::Held { expires_at: None })
}

pub(crate) fn fence_token(key: &str, value: &Json) -> Result<u64> {
    value.decode::<u64>().map_err(|_| {
        Error::new(ErrorKind::InvalidValue, "a lease's fence holds a JSON integer").with_key(key)
    })
}

fn holder_token(key: &str, value: &Json) -> Result<u64> {
    value.decode::<Holder>().map(|h| h.token).map_err(|_| {
        Error::new(ErrorKind::InvalidValue, "a lease's holder key holds {token, holder}").with_key(key)
    })
}
