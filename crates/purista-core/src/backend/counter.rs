//! Counters by compare-and-swap, for backends without a native increment:
//! read the entry, write the sum under its ETag (or create it), retry on a
//! conflict (at most `UPDATE_ATTEMPTS` times, as `update`). Linearizable
//! wherever the backend's ETag writes are.

use std::time::{Duration, SystemTime};

use super::Backend;
use crate::{Error, ErrorKind, Json, PutMode, PutOptions, Result, UPDATE_ATTEMPTS};

/// The integer a counter holds; anything else is `InvalidValue` naming the key.
pub fn counter_value(key: &str, value: &Json) -> Result<i64> {
    value.decode::<i64>().map_err(|_| {
        Error::new(ErrorKind::InvalidValue, "a counter holds a JSON integer (i64)").with_key(key)
    })
}

/// `current + delta`, or `InvalidValue` on overflow.
pub fn add(key: &str, current: i64, delta: i64) -> Result<i64> {
    current.checked_add(delta).ok_or_else(|| {
        Error::new(ErrorKind::InvalidValue, format!("counter overflow: {current} + {delta}")).with_key(key)
    })
}

/// What is left of an expiry, rounded to the *nearest* TTL step (at least
/// one step): a TTL is relative to the write, so on a store with whole-second
/// TTLs the expiry can only be kept to within half a step. Rounding down
/// lost up to a step per increment (a hammered counter expired within a
/// second, resetting a rate-limit window); rounding up gained as much.
fn remaining<B: Backend>(b: &B, at: SystemTime) -> Duration {
    let caps = Backend::capabilities(b);
    let step = caps.ttl.unwrap_or(Duration::from_millis(1));
    // An expiry reported truncated (Dapr's whole seconds) is anywhere in the
    // step after it: take the middle, or every increment would lose half a
    // step on average.
    let at = at + caps.expiry_precision.unwrap_or_default() / 2;
    let step = step.as_nanos().max(1);
    let left = at.duration_since(SystemTime::now()).unwrap_or_default().as_nanos();
    let nearest = ((left + step / 2) / step).max(1) * step;
    Duration::from_nanos(u64::try_from(nearest).unwrap_or(u64::MAX))
}

pub(super) async fn by_compare_and_swap<B: Backend>(
    b: &B,
    key: &str,
    delta: i64,
    ttl: Option<Duration>,
) -> Result<i64> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (next, options) = match Backend::get_entry(b, key).await? {
            None => (delta, PutOptions { mode: PutMode::Create, ttl }),
            Some(entry) => {
                let next = add(key, counter_value(key, &entry.value)?, delta)?;
                let left = entry.expires_at.map(|at| remaining(b, at));
                (next, PutOptions { mode: PutMode::Update(entry.etag), ttl: left })
            }
        };
        match Backend::put(b, key, Json::integer(next), &options).await {
            Ok(_) => return Ok(next),
            Err(e) if e.kind() == ErrorKind::Conflict && attempt < UPDATE_ATTEMPTS => {
                tokio::task::yield_now().await
            }
            Err(e) => return Err(e),
        }
    }
}
