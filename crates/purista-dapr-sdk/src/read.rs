//! Reads: one key with `GetState`, many with `GetBulkState` (asked in parts
//! while an answer is over a gRPC message size limit).

use std::{collections::HashMap, time::SystemTime};

use bytes::Bytes;
use dapr::dapr::proto::runtime::v1::{BulkStateItem, GetBulkStateRequest, GetStateRequest, GetStateResponse};
use purista_core::{Error, ErrorKind, Json, Result};

use crate::{DaprStateStore, TTL_EXPIRE_TIME_KEY, error::is_too_large};

impl DaprStateStore {
    /// One `GetState`.
    pub(crate) async fn read_one(&self, key: &str) -> Result<GetStateResponse> {
        let req = self.conn.request(GetStateRequest {
            store_name: self.settings.store_name.clone(),
            key: key.to_string(),
            consistency: self.settings.consistency,
            metadata: HashMap::new(),
        });
        self.conn.call("get", Some(key), |mut c| async move { c.get_state(req).await }).await
    }

    /// The values of `keys`, in order, `None` where missing.
    pub(crate) async fn read_values(&self, keys: &[&str]) -> Result<Vec<Option<Json>>> {
        // Items moved, not copied: a value becomes `Bytes` once, and a name
        // asked twice shares it.
        let by_key: HashMap<String, (String, Bytes)> =
            self.bulk_get(keys).await?.into_iter().map(|i| (i.key, (i.error, Bytes::from(i.data)))).collect();
        keys.iter()
            .map(|k| match by_key.get(*k) {
                None => Err(Error::new(ErrorKind::Backend, "dapr bulk get: the sidecar answered no item")
                    .with_key(*k)),
                Some((error, _)) if !error.is_empty() => {
                    Err(Error::new(ErrorKind::Backend, format!("dapr bulk get: {error}")).with_key(*k))
                }
                Some((_, data)) if data.is_empty() => Ok(None),
                Some((_, data)) => Ok(Some(Json::from_stored(data.clone()))),
            })
            .collect()
    }

    /// Current ETags of `keys` (`None` where missing), in order.
    pub(crate) async fn read_etags(&self, keys: &[&str]) -> Result<Vec<Option<String>>> {
        let by_key: HashMap<String, (bool, String)> =
            self.bulk_get(keys).await?.into_iter().map(|i| (i.key, (!i.data.is_empty(), i.etag))).collect();
        Ok(keys
            .iter()
            .map(|k| by_key.get(*k).filter(|(present, _)| *present).map(|(_, t)| t.clone()))
            .collect())
    }

    /// `GetBulkState` for `keys`: the sidecar's items, in any order. One
    /// call, unless the request or its answer is over a gRPC message size
    /// limit (the sidecar's or this client's): then the keys are halved and
    /// asked again, until each answer fits or one key alone does not (an
    /// error naming that key). Each call has the full request timeout.
    async fn bulk_get(&self, keys: &[&str]) -> Result<Vec<BulkStateItem>> {
        let mut items = Vec::new();
        let mut pending = vec![keys];
        while let Some(chunk) = pending.pop() {
            let req = self.conn.request(GetBulkStateRequest {
                store_name: self.settings.store_name.clone(),
                keys: chunk.iter().map(|k| k.to_string()).collect(),
                parallelism: 0,
                metadata: HashMap::new(),
            });
            match self.conn.client().get_bulk_state(req).await {
                // The common case, one answer, is taken as it is.
                Ok(resp) if items.is_empty() => items = resp.into_inner().items,
                Ok(resp) => items.extend(resp.into_inner().items),
                Err(status) if is_too_large(&status) && chunk.len() > 1 => {
                    let (first, second) = chunk.split_at(chunk.len() / 2);
                    pending.push(second);
                    pending.push(first);
                }
                Err(status) => {
                    // A failure of one key's read is about that key.
                    let key = match chunk {
                        [only] => Some(*only),
                        _ => None,
                    };
                    return Err(self.conn.failed(status, "bulk get", key));
                }
            }
        }
        Ok(items)
    }
}

/// When a value expires, from the sidecar's `ttlExpireTime`; a value it
/// cannot read is logged and taken as no expiry.
pub(crate) fn parse_expiry(metadata: &HashMap<String, String>) -> Option<SystemTime> {
    let raw = metadata.get(TTL_EXPIRE_TIME_KEY)?;
    match chrono::DateTime::parse_from_rfc3339(raw) {
        Ok(t) => Some(SystemTime::from(t.with_timezone(&chrono::Utc))),
        Err(e) => {
            tracing::warn!(value = %raw, error = %e, "dapr sidecar sent an unreadable ttlExpireTime");
            None
        }
    }
}
