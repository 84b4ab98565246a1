//! What a message in the bucket says about its key: a value, a marker or
//! nothing; when a value expires; and revisions as ETags.
//!
//! Expiry is the server's to judge: it removes a message whose TTL ran out
//! (on its own clock) and writes an expiry marker, within milliseconds. A
//! message it still holds is live, whatever this machine's clock says;
//! comparing the server's time stamp with the local clock would hide live
//! values (and let a create-only write replace them) whenever the clocks
//! disagree.

use std::time::{Duration, SystemTime};

use async_nats::{HeaderMap, jetstream::message::StreamMessage};
use bytes::Bytes;
use purista_core::{ETag, Entry, Error, Json, Result, WatchKind};

/// The header of a KV operation (`DEL`, `PURGE`).
pub(crate) const KV_OPERATION: &str = "KV-Operation";

/// The live state of a key as the server has it.
pub(crate) enum Current {
    /// Nothing was ever written (or it is gone entirely).
    Missing,
    /// A delete, purge or expiry marker, at this revision.
    Gone(u64),
    /// A value.
    Live { value: Bytes, revision: u64, expires_at: Option<SystemTime> },
}

impl Current {
    /// A message as the key's state: a marker is no value, anything else
    /// the server still holds is live (see the module documentation).
    pub(crate) fn of(headers: &HeaderMap, published: SystemTime, revision: u64, value: Bytes) -> Current {
        if marker(headers).is_some() {
            return Current::Gone(revision);
        }
        Current::Live { value, revision, expires_at: expiry(headers, published) }
    }

    /// The key's state from its last message, if it has one.
    pub(crate) fn of_last(message: Option<&StreamMessage>) -> Current {
        match message {
            None => Current::Missing,
            Some(m) => Current::of(&m.headers, SystemTime::from(m.time), m.sequence, m.payload.clone()),
        }
    }

    /// The revision a condition on the key expects now (`0`: no message).
    pub(crate) fn revision(&self) -> u64 {
        match self {
            Current::Missing => 0,
            Current::Gone(revision) | Current::Live { revision, .. } => *revision,
        }
    }

    pub(crate) fn is_live(&self) -> bool {
        matches!(self, Current::Live { .. })
    }

    pub(crate) fn into_value(self) -> Option<Json> {
        match self {
            Current::Live { value, .. } => Some(Json::from_stored(value)),
            _ => None,
        }
    }

    pub(crate) fn into_entry(self) -> Option<Entry> {
        match self {
            Current::Live { value, revision, expires_at } => {
                Some(Entry { value: Json::from_stored(value), etag: etag(revision), expires_at })
            }
            _ => None,
        }
    }
}

/// A watch event's kind for a message (`revision`: its stream sequence,
/// when the message carries it).
pub(crate) fn watch_kind(headers: &HeaderMap, payload: Bytes, revision: Option<u64>) -> WatchKind {
    marker(headers)
        .unwrap_or_else(|| WatchKind::Set { value: Json::from_stored(payload), etag: revision.map(etag) })
}

/// A names-only event's kind: a removal or expiry as the headers say, any
/// write as `Changed` (its value was not sent).
pub(crate) fn change_kind(headers: &HeaderMap) -> WatchKind {
    marker(headers).unwrap_or(WatchKind::Changed)
}

/// The ETag of a revision: the revision (stream sequence) in decimal.
pub(crate) fn etag(revision: u64) -> ETag {
    ETag::new(revision.to_string())
}

/// A revision from an ETag. Revisions start at 1: `0` would tell the server
/// "no message yet" (a create), so it matches nothing, like any foreign ETag.
pub(crate) fn parse_etag(key: &str, etag: &ETag) -> Result<u64> {
    match etag.as_str().parse::<u64>() {
        Ok(revision) if revision > 0 => Ok(revision),
        _ => Err(Error::etag_mismatch(key)),
    }
}

fn header<K: async_nats::header::IntoHeaderName>(headers: &HeaderMap, name: K) -> Option<&str> {
    headers.get(name).map(|v| v.as_str())
}

/// Whether a message is a marker (removed, purged, expired), and which.
fn marker(headers: &HeaderMap) -> Option<WatchKind> {
    if let Some(reason) = header(headers, async_nats::header::NATS_MARKER_REASON) {
        return Some(if reason == "MaxAge" { WatchKind::Expired } else { WatchKind::Removed });
    }
    match header(headers, KV_OPERATION) {
        Some("DEL") | Some("PURGE") => Some(WatchKind::Removed),
        _ => None,
    }
}

/// Parses a `Nats-TTL` value: whole seconds, or a Go duration (`1h2m3s`,
/// `500ms`); `None` for `never`, for what it cannot read and for what does
/// not fit a `Duration` (another client's header never panics a reader).
fn parse_ttl(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = value;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total = total.checked_add(Duration::try_from_secs_f64(number * scale).ok()?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// When a message's TTL runs out, in the server's clock (`published` is
/// the server's time stamp); `None` without a TTL, or past `SystemTime`'s range.
fn expiry(headers: &HeaderMap, published: SystemTime) -> Option<SystemTime> {
    let ttl = parse_ttl(header(headers, async_nats::header::NATS_MESSAGE_TTL)?)?;
    if ttl.is_zero() {
        return None;
    }
    published.checked_add(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_values() {
        assert_eq!(parse_ttl("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_ttl("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_ttl("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_ttl("1500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_ttl("never"), None);
    }

    #[test]
    fn ttls_past_any_clock_are_no_expiry_not_a_panic() {
        let mut headers = HeaderMap::new();
        for ttl in ["9223372036854775807", "18446744073709551615", "99999999999999999999h", "1e400s"] {
            headers.insert(async_nats::header::NATS_MESSAGE_TTL, ttl);
            assert_eq!(expiry(&headers, SystemTime::now()), None, "{ttl}");
        }
    }

    #[test]
    fn a_message_the_server_holds_is_live_whatever_the_local_clock_says() {
        // Published long ago with a 1 s TTL, as a client whose clock runs
        // ahead of the server's sees a value that is live on the server.
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_TTL, "1");
        let published = SystemTime::UNIX_EPOCH;
        let current = Current::of(&headers, published, 7, Bytes::from_static(b"1"));
        assert!(matches!(current, Current::Live { revision: 7, .. }));
        headers.insert(async_nats::header::NATS_MARKER_REASON, "MaxAge");
        assert!(matches!(Current::of(&headers, published, 8, Bytes::new()), Current::Gone(8)));
    }

    #[test]
    fn etags_are_revisions_and_zero_matches_nothing() {
        assert_eq!(etag(42).as_str(), "42");
        assert_eq!(parse_etag("k", &etag(42)).ok(), Some(42));
        for foreign in ["0", "-1", "abc", "1.5"] {
            assert!(parse_etag("k", &ETag::new(foreign)).is_err(), "{foreign}");
        }
    }
}
