//! Typed access over the contract: what handlers normally call.

use std::{future::Future, time::Duration, time::SystemTime};

use serde::{Serialize, de::DeserializeOwned};

use crate::{ETag, ErrorKind, Json, PutMode, PutOptions, Result, StateStore};

/// How many times [`StateStoreExt::update`] retries after a conflict before
/// giving up with that conflict.
pub const UPDATE_ATTEMPTS: usize = 10_000;

/// A decoded value with its version and expiry.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// The decoded document.
    pub value: T,
    /// Its current ETag.
    pub etag: ETag,
    /// When it expires, if it has a TTL.
    pub expires_at: Option<SystemTime>,
}

/// Serde on top of [`StateStore`], for every store (`dyn` included).
///
/// A stored value that does not decode as `T` is an
/// [`InvalidValue`](ErrorKind::InvalidValue) error naming the key. A stored
/// JSON `null` read as `Option<U>` is `Some(None)`; a missing key is `None`.
pub trait StateStoreExt: StateStore {
    /// Reads and decodes one value.
    fn get<T: DeserializeOwned + Send>(&self, name: &str) -> impl Future<Output = Result<Option<T>>> + Send {
        async move { self.get_value(name).await?.map(|json| decode(json, name)).transpose() }
    }

    /// Encodes and writes one value (no TTL: an earlier TTL is removed).
    fn set<T: Serialize + ?Sized + Sync>(
        &self,
        name: &str,
        value: &T,
    ) -> impl Future<Output = Result<()>> + Send {
        async move { self.set_state(name, encode(value, name)?).await }
    }

    /// Encodes and writes one value that expires after `ttl`.
    fn set_with_ttl<T: Serialize + ?Sized + Sync>(
        &self,
        name: &str,
        value: &T,
        ttl: Duration,
    ) -> impl Future<Output = Result<()>> + Send {
        async move { self.put(name, encode(value, name)?, PutOptions::default().ttl(ttl)).await.map(drop) }
    }

    /// Reads and decodes one value with its ETag and expiry.
    fn get_versioned<T: DeserializeOwned + Send>(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Versioned<T>>>> + Send {
        async move {
            let Some(entry) = self.get_entry(name).await? else { return Ok(None) };
            let value = decode(entry.value, name)?;
            Ok(Some(Versioned { value, etag: entry.etag, expires_at: entry.expires_at }))
        }
    }

    /// Read-modify-write with optimistic concurrency: reads the value and its
    /// ETag, applies `f`, writes only if nobody wrote in between, and retries
    /// on conflict. `f` may run several times. Returns the value written.
    fn update<T, F>(
        &self,
        name: &str,
        ttl: Option<Duration>,
        mut f: F,
    ) -> impl Future<Output = Result<T>> + Send
    where
        T: Serialize + DeserializeOwned + Send + Sync,
        F: FnMut(Option<T>) -> T + Send,
    {
        async move {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let (current, mode) = match self.get_versioned::<T>(name).await? {
                    Some(v) => (Some(v.value), PutMode::Update(v.etag)),
                    None => (None, PutMode::Create),
                };
                let next = f(current);
                match self.put(name, encode(&next, name)?, PutOptions { mode, ttl }).await {
                    Ok(_) => return Ok(next),
                    Err(e) if e.kind() == ErrorKind::Conflict && attempt < UPDATE_ATTEMPTS => {
                        // Let the writer that won finish before we read again.
                        tokio::task::yield_now().await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

impl<S: StateStore + ?Sized> StateStoreExt for S {}

/// A value read under `name`, decoded: errors name the key.
pub(crate) fn decode<T: DeserializeOwned>(json: Json, name: &str) -> Result<T> {
    json.decode().map_err(|e| e.with_key(name))
}

/// A value to write under `name`, encoded: errors name the key.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, name: &str) -> Result<Json> {
    Json::encode(value).map_err(|e| e.with_key(name))
}
