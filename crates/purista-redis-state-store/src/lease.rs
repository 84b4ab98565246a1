//! Lease steps natively: one script each, so a lock costs the round trips
//! of `SET NX PX` and a Lua release (core's generic steps take twice as many).

use std::time::{Duration, SystemTime};

use fred::types::{Key, Value};
use purista_core::{
    Error, ErrorKind, Json, Result,
    lease::{LeaseAnswer, LeaseStep},
};

use crate::{
    RedisStateStore,
    etag::{next_version, version_key},
    scripts::{self, LEASE_GRANT, LEASE_RELEASE, LEASE_RENEW},
};

/// `None` for a step this crate does not know (core does it then).
pub(crate) async fn step(
    store: &RedisStateStore,
    fence: &str,
    holder: &str,
    step: &LeaseStep,
) -> Result<Option<LeaseAnswer>> {
    let holder_keys = || -> Result<Vec<Key>> { Ok(vec![Key::from(holder), Key::from(version_key(holder)?)]) };
    let answer = match step {
        LeaseStep::Grant { holder: name, ttl } => {
            let keys = vec![
                Key::from(fence),
                Key::from(version_key(fence)?),
                Key::from(holder),
                Key::from(version_key(holder)?),
            ];
            let name = Json::encode(name)?;
            let args = vec![
                Value::from(millis(*ttl)),
                Value::from(name.as_bytes()),
                Value::from(i64::from(store.db())),
                Value::from(next_version()),
                Value::from(next_version()),
            ];
            let reply = scripts::run_write(store, &LEASE_GRANT, keys, args, granted).await?;
            match answer(reply, fence)? {
                (1, Value::String(t)) => {
                    t.parse().map(|token| LeaseAnswer::Granted { token }).map_err(|_| unexpected(fence))
                }
                (0, pttl) => {
                    let left = pttl.as_i64().and_then(|ms| u64::try_from(ms).ok());
                    let expires_at = left.map(|ms| SystemTime::now() + Duration::from_millis(ms));
                    Ok(LeaseAnswer::Held { expires_at })
                }
                (2, _) => Err(Error::new(
                    ErrorKind::InvalidValue,
                    "a lease's fence holds a JSON integer below 10^15",
                )
                .with_key(fence)),
                _ => Err(unexpected(fence)),
            }
        }
        LeaseStep::Renew { token, ttl } => {
            let args = vec![Value::from(token.to_string()), Value::from(millis(*ttl))];
            let reply = scripts::run_write(store, &LEASE_RENEW, holder_keys()?, args, done).await?;
            done_or_lost(reply, holder)
        }
        LeaseStep::Release { token } => {
            let args = vec![Value::from(token.to_string()), Value::from(i64::from(store.db()))];
            let reply = scripts::run_write(store, &LEASE_RELEASE, holder_keys()?, args, done).await?;
            done_or_lost(reply, holder)
        }
        _ => return Ok(None),
    };
    answer.map(Some)
}

fn millis(ttl: Duration) -> String {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).to_string()
}

/// A `{code, detail}` reply.
fn answer(reply: Value, key: &str) -> Result<(i64, Value)> {
    let Value::Array(mut parts) = reply else { return Err(unexpected(key)) };
    let detail = parts.pop().ok_or_else(|| unexpected(key))?;
    let code = parts.pop().and_then(|c| c.as_i64()).ok_or_else(|| unexpected(key))?;
    Ok((code, detail))
}

fn done_or_lost(reply: Value, holder: &str) -> Result<LeaseAnswer> {
    match reply {
        Value::Integer(1) => Ok(LeaseAnswer::Done),
        Value::Integer(0) => Ok(LeaseAnswer::Lost),
        other => match answer(other, holder)? {
            (2, value) => {
                let shown =
                    value.into_bytes().map(Json::from_stored).map(|v| v.to_string()).unwrap_or_default();
                let msg = format!("a lease's holder key holds {{token, holder}}, not {shown}");
                Err(Error::new(ErrorKind::InvalidValue, msg).with_key(holder))
            }
            _ => Err(unexpected(holder)),
        },
    }
}

fn granted(reply: &Value) -> bool {
    matches!(reply, Value::Array(parts) if parts.first().and_then(Value::as_i64) == Some(1))
}

fn done(reply: &Value) -> bool {
    matches!(reply, Value::Integer(1))
}

fn unexpected(key: &str) -> Error {
    Error::new(ErrorKind::Backend, "redis: an unexpected answer to a lease script").with_key(key)
}
