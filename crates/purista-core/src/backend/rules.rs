//! The rules every call passes, whatever the backend: enable flags, keys,
//! values, TTLs, ETag conditions, the key prefix.

use std::{borrow::Cow, time::Duration};

use crate::{
    Capability, ETag, Error, ErrorKind, Json, PutMode, PutOptions, Result, StoreConfig,
    key::{MAX_KEY_BYTES, join, strip, validate_key},
};

use super::{Backend, MAX_TTL};

/// Inlined: every call passes it, and the check is one flag.
#[inline]
pub(super) fn enabled(on: bool, store: &str, message: &'static str) -> Result<()> {
    if on { Ok(()) } else { disabled(store, message) }
}

#[cold]
fn disabled(store: &str, message: &'static str) -> Result<()> {
    tracing::error!(store, "{message}");
    Err(Error::disabled(message))
}

pub(super) fn unsupported<B: Backend>(b: &B, capability: Capability) -> Error {
    let store = Backend::name(b);
    match b.unsupported_reason(capability) {
        Some(why) => Error::unsupported(format!("{store} does not support {capability}: {why}")),
        None => Error::unsupported(format!("{store} does not support {capability}")),
    }
}

/// Rounds `ttl` up to a whole multiple of `granularity`.
pub(super) fn round_up(ttl: Duration, granularity: Duration) -> Duration {
    let (t, g) = (ttl.as_nanos(), granularity.as_nanos().max(1));
    let rounded = t.div_ceil(g) * g;
    Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
}

/// Checks a caller's key: the core's rules, then the backend's reserved
/// substrings in the key as it will be stored (with the prefix).
pub(super) fn check_key<B: Backend>(b: &B, key: &str) -> Result<()> {
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
pub(super) fn check_put<B: Backend>(b: &B, key: &str, value: &Json, options: &mut PutOptions) -> Result<()> {
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
    options.ttl = check_ttl(b, options.ttl)?;
    Ok(())
}

/// A TTL needs the capability, is positive and at most [`MAX_TTL`], and is
/// rounded up to the backend's step.
pub(super) fn check_ttl<B: Backend>(b: &B, ttl: Option<Duration>) -> Result<Option<Duration>> {
    let Some(ttl) = ttl else { return Ok(None) };
    let Some(granularity) = Backend::capabilities(b).ttl else {
        return Err(unsupported(b, Capability::Ttl));
    };
    if ttl.is_zero() || ttl > MAX_TTL {
        let msg = format!("ttl must be positive and at most {}s, got {ttl:?}", MAX_TTL.as_secs());
        return Err(Error::new(ErrorKind::InvalidArgument, msg));
    }
    Ok(Some(round_up(ttl, granularity)))
}

/// An ETag condition needs the capability, and an empty ETag matches
/// nothing: a conflict here, so that no backend can read it as "no condition".
pub(super) fn check_etag<B: Backend>(b: &B, key: &str, etag: Option<&ETag>) -> Result<()> {
    match etag {
        Some(_) if !Backend::capabilities(b).etag => Err(unsupported(b, Capability::Etag)),
        Some(etag) if etag.as_str().is_empty() => Err(Error::etag_mismatch(key)),
        _ => Ok(()),
    }
}

/// Errors name the caller's key, without the store's prefix.
pub(super) fn unprefix(config: &StoreConfig) -> impl Fn(Error) -> Error + '_ {
    |e| e.map_key(|k| strip(&config.key_prefix, k))
}

#[inline]
pub(super) fn prefixed<'a>(prefix: &str, key: &'a str) -> Cow<'a, str> {
    if prefix.is_empty() { Cow::Borrowed(key) } else { Cow::Owned(join(prefix, key)) }
}

pub(super) fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.len() > MAX_KEY_BYTES {
        return Err(Error::new(
            ErrorKind::InvalidKey,
            format!("prefix is longer than {MAX_KEY_BYTES} bytes"),
        ));
    }
    Ok(())
}
