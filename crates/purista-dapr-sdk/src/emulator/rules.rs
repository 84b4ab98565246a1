//! What the sidecar and its in-memory component refuse or check in a state
//! item: keys, ETags, first-write, TTLs. Each rule in one place; the store
//! applies what passes ([`Store::apply`](super::storage::Store::apply)).

use std::{collections::HashMap, time::Duration};

use dapr::dapr::proto::common::v1::{self as common, StateItem, state_options::StateConcurrency};
use tonic::Status;

use crate::TTL_KEY;

/// Dapr's separator between app id and key.
const SEPARATOR: &str = "||";
/// Dapr's `state.ETagError` messages.
const MISMATCH: &str = "possible etag mismatch. error from state store";
const INVALID_ETAG: &str = "invalid etag value";

/// Why the state component failed an operation. How the sidecar answers it
/// depends on the call: see [`Fail::status`] and the transaction's answer.
#[derive(Debug)]
pub(super) enum Fail {
    Mismatch,
    InvalidEtag,
    Other(String),
}

impl Fail {
    pub(super) fn message(&self) -> &str {
        match self {
            Fail::Mismatch => MISMATCH,
            Fail::InvalidEtag => INVALID_ETAG,
            Fail::Other(m) => m,
        }
    }

    /// How the sidecar answers a failed single-shot operation
    /// (`stateErrorResponse`): mismatch `Aborted`, invalid ETag
    /// `InvalidArgument`, anything else `Internal`.
    pub(super) fn status(&self, context: &str) -> Status {
        let message = format!("{context}: {}", self.message());
        match self {
            Fail::Mismatch => Status::aborted(message),
            Fail::InvalidEtag => Status::invalid_argument(message),
            Fail::Other(_) => Status::internal(message),
        }
    }
}

/// Why a state item is refused before it meets the store.
#[derive(Debug)]
pub(super) enum Refused {
    /// By the sidecar, as a bad request (an empty key, one holding `||`):
    /// every call answers this status, a transaction at once.
    Request(Status),
    /// By the state component (an ETag or a TTL it cannot read): each call
    /// answers as it answers the component's failures.
    Component(Fail),
}

impl Refused {
    /// How a single-shot operation answers.
    pub(super) fn status(self, context: &str) -> Status {
        match self {
            Refused::Request(status) => status,
            Refused::Component(fail) => fail.status(context),
        }
    }
}

/// A write or delete, validated and keyed, ready to be checked and applied.
#[derive(Debug)]
pub(super) struct Change {
    /// As stored, `<app-id>||<key>`.
    pub(super) key: String,
    pub(super) etag: Option<u64>,
    pub(super) first_write: bool,
    /// The value and its TTL; `None` for a delete.
    pub(super) write: Option<(Vec<u8>, Option<Duration>)>,
}

impl Change {
    /// Validates a state item into a change (`write` for a save, else a
    /// delete), keyed under `app_id`.
    pub(super) fn new(app_id: &str, item: StateItem, write: bool) -> Result<Change, Refused> {
        let key = stored_key(app_id, &item.key).map_err(Refused::Request)?;
        let etag = parse_etag(item.etag.as_ref()).map_err(Refused::Component)?;
        let write = match write {
            true => Some((item.value, parse_ttl(&item.metadata).map_err(Refused::Component)?)),
            false => None,
        };
        Ok(Change { key, etag, first_write: first_write(item.options.as_ref()), write })
    }

    /// Checks the change's condition against the key's live version.
    pub(super) fn check(&self, current: Option<u64>) -> Result<(), Fail> {
        match self.etag {
            Some(tag) if current != Some(tag) => Err(Fail::Mismatch),
            None if self.first_write && current.is_some() => Err(Fail::Mismatch),
            _ => Ok(()),
        }
    }
}

/// `<app-id>||<key>`, refusing what Dapr's state loader refuses.
pub(super) fn stored_key(app_id: &str, key: &str) -> Result<String, Status> {
    if key.is_empty() {
        return Err(Status::invalid_argument("key cannot be empty"));
    }
    if key.contains(SEPARATOR) {
        return Err(Status::invalid_argument(format!(
            "input key/keyPrefix '{key}' can't contain '{SEPARATOR}'"
        )));
    }
    Ok(format!("{app_id}{SEPARATOR}{key}"))
}

/// ETags are decimal versions; an empty one counts as none (components
/// test `HasETag()`).
fn parse_etag(etag: Option<&common::Etag>) -> Result<Option<u64>, Fail> {
    match etag {
        None => Ok(None),
        Some(e) if e.value.is_empty() => Ok(None),
        Some(e) => e.value.parse().map(Some).map_err(|_| Fail::InvalidEtag),
    }
}

/// Dapr's `utils.ParseTTL`, then the in-memory component: a positive value
/// expires, `0` and `-1` do not, anything else is an error.
fn parse_ttl(metadata: &HashMap<String, String>) -> Result<Option<Duration>, Fail> {
    let Some(raw) = metadata.get(TTL_KEY).filter(|v| !v.is_empty()) else { return Ok(None) };
    let secs: i64 =
        raw.parse().map_err(|e| Fail::Other(format!("incorrect value for metadata '{TTL_KEY}': {e}")))?;
    if !(-1..=i64::from(i32::MAX)).contains(&secs) {
        return Err(Fail::Other(format!("incorrect value for {TTL_KEY} {secs}")));
    }
    Ok((secs > 0).then(|| Duration::from_secs(secs.unsigned_abs())))
}

fn first_write(options: Option<&common::StateOptions>) -> bool {
    options.is_some_and(|o| o.concurrency == StateConcurrency::ConcurrencyFirstWrite as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_parsing_follows_dapr() {
        let md = |v: &str| HashMap::from([(TTL_KEY.to_string(), v.to_string())]);
        assert_eq!(parse_ttl(&HashMap::new()).unwrap(), None);
        assert_eq!(parse_ttl(&md("")).unwrap(), None);
        assert_eq!(parse_ttl(&md("-1")).unwrap(), None);
        assert_eq!(parse_ttl(&md("0")).unwrap(), None);
        assert_eq!(parse_ttl(&md("5")).unwrap(), Some(Duration::from_secs(5)));
        for bad in ["1.5", "abc", "-2", "2147483648", " 1"] {
            assert!(parse_ttl(&md(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn etags_are_decimal_versions() {
        let e = |v: &str| common::Etag { value: v.into() };
        assert_eq!(parse_etag(None).unwrap(), None);
        assert_eq!(parse_etag(Some(&e(""))).unwrap(), None);
        assert_eq!(parse_etag(Some(&e("42"))).unwrap(), Some(42));
        assert!(matches!(parse_etag(Some(&e("W/\"x\""))), Err(Fail::InvalidEtag)));
    }
}
