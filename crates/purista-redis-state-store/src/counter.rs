//! `increment` natively: one script runs `INCRBY` on the plain JSON number
//! and bumps the version, so the ETag changes as with every other write.

use std::time::Duration;

use fred::types::{Key, Value};
use purista_core::{
    Error, ErrorKind, Json, Result,
    backend::{add, counter_value},
};

use crate::{
    RedisStateStore,
    etag::{next_version, version_key},
    scripts::{self, INCREMENT},
};

pub(crate) async fn increment(
    store: &RedisStateStore,
    key: &str,
    delta: i64,
    ttl: Option<Duration>,
) -> Result<i64> {
    let keys = vec![Key::from(key), Key::from(version_key(key)?)];
    let ttl = ttl.map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX).to_string()).unwrap_or_default();
    let args = vec![Value::from(delta), Value::from(ttl), Value::from(next_version())];
    let reply =
        scripts::run_write(store, &INCREMENT, keys, args, summed).await.map_err(|e| e.with_key(key))?;
    let unexpected = || Error::new(ErrorKind::Backend, "redis: an unexpected answer to the counter script");
    let Value::Array(mut parts) = reply else { return Err(unexpected().with_key(key)) };
    match (parts.pop(), parts.pop().and_then(|done| done.as_i64())) {
        (Some(sum), Some(1)) => sum
            .as_i64()
            .or_else(|| sum.as_bytes_str()?.parse().ok())
            .ok_or_else(|| unexpected().with_key(key)),
        // Refused: the same error core's compare-and-swap path gives.
        (Some(stored), Some(0)) => {
            let stored =
                stored.into_bytes().map(Json::from_stored).ok_or_else(|| unexpected().with_key(key))?;
            Err(match counter_value(key, &stored) {
                Ok(current) => add(key, current, delta).err().unwrap_or_else(|| unexpected().with_key(key)),
                Err(e) => e,
            })
        }
        _ => Err(unexpected().with_key(key)),
    }
}

/// Whether the script wrote (then the store may wait for replicas).
fn summed(reply: &Value) -> bool {
    matches!(reply, Value::Array(parts) if parts.first().and_then(Value::as_i64) == Some(1))
}
