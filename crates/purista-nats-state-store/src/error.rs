//! async-nats errors mapped onto `purista_core::Error` kinds, cause kept.

use std::error::Error as StdError;

use async_nats::jetstream::{self, ErrorCode};
use purista_core::{Error, ErrorKind};

use crate::write::CREATE_ATTEMPTS;

/// PURISTA's message when the server has no JetStream.
pub const NO_JETSTREAM: &str = "JetStream is not enabled on NATS server";

/// The JetStream API error somewhere in `err`'s source chain.
pub(crate) fn jetstream_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a jetstream::Error> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(js) = e.downcast_ref::<jetstream::Error>() {
            return Some(js);
        }
        next = e.source();
    }
    None
}

/// Whether any error in the chain says `needle` (async-nats spells some
/// conditions only in messages: "timed out", "no responders").
fn says(err: &(dyn StdError + 'static), needle: &str) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.to_string().to_ascii_lowercase().contains(needle) {
            return true;
        }
        next = e.source();
    }
    false
}

/// The kind of a failure that is not a conflict.
pub(crate) fn kind_of(err: &(dyn StdError + 'static)) -> ErrorKind {
    if let Some(js) = jetstream_error(err) {
        return match js.error_code() {
            ErrorCode::JETSTREAM_NOT_ENABLED | ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT => {
                ErrorKind::Unavailable
            }
            ErrorCode::STREAM_WRONG_LAST_SEQUENCE => ErrorKind::Conflict,
            // Not checked, nothing written: another write to the subject
            // was in flight (10164), or a new leader was not ready (10163).
            code if is_unchecked_code(code) => ErrorKind::Unavailable,
            ErrorCode::ATOMIC_PUBLISH_DISABLED | ErrorCode::MESSAGE_TTL_DISABLED => ErrorKind::Unsupported,
            _ if js.code() == 503 => ErrorKind::Unavailable,
            _ if js.code() == 408 => ErrorKind::Timeout,
            _ => ErrorKind::Backend,
        };
    }
    if says(err, "timed out") || says(err, "timeout") {
        ErrorKind::Timeout
    } else if says(err, "no responders")
        || says(err, "broken pipe")
        || says(err, "disconnected")
        || says(err, "connection")
    {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Backend
    }
}

/// Wraps an async-nats error: `what` failed, on `key` if given.
pub(crate) fn wrap<E>(what: &str, key: Option<&str>, err: E) -> Error
where
    E: StdError + Send + Sync + 'static,
{
    let kind = match kind_of(&err) {
        // A conflict is reported by the caller, which knows the key; here it
        // only arrives through paths that are not compare-and-swap.
        ErrorKind::Conflict => ErrorKind::Backend,
        kind => kind,
    };
    let message = match kind {
        ErrorKind::Unavailable if says(&err, "jetstream not enabled") => NO_JETSTREAM.to_owned(),
        _ => format!("NATS {what} failed"),
    };
    let error = Error::new(kind, message).with_source(err);
    match key {
        Some(key) => error.with_key(key),
        None => error,
    }
}

/// The server refused a write because the key's revision moved on.
pub(crate) fn is_wrong_revision(err: &(dyn StdError + 'static)) -> bool {
    jetstream_error(err).is_some_and(|js| js.error_code() == ErrorCode::STREAM_WRONG_LAST_SEQUENCE)
}

/// The server refused a conditional write without checking its revision:
/// 10164 ("wrong last sequence", no number) is what a clustered stream's
/// leader answers while another write to the subject is still in flight,
/// 10163 a new leader not ready. Nothing was written, and the condition may
/// still hold: not a conflict (the revision may be current), but worth
/// sending again.
pub(crate) fn is_unchecked(err: &(dyn StdError + 'static)) -> bool {
    jetstream_error(err).is_some_and(|js| is_unchecked_code(js.error_code()))
}

fn is_unchecked_code(code: ErrorCode) -> bool {
    code == ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT
        || code == ErrorCode::STREAM_EXPECTED_LAST_SEQ_PER_SUBJECT_NOT_READY
}

/// A create-only write that kept finding the key absent and kept losing to
/// another marker: not a `Conflict`, which would say the key exists.
pub(crate) fn contended(key: &str) -> Error {
    let msg = format!(
        "create-only write lost {CREATE_ATTEMPTS} races to removes of the absent key; nothing written"
    );
    Error::new(ErrorKind::Backend, msg).with_key(key)
}

/// A write to `key` the server refused or did not acknowledge; `what`
/// names the write. A revision mismatch is a conflict on `key`.
pub(crate) fn publish_error(key: &str, what: &str, err: jetstream::context::PublishError) -> Error {
    use jetstream::context::PublishErrorKind as K;
    match err.kind() {
        K::WrongLastSequence => Error::etag_mismatch(key).with_source(err),
        K::Other if is_unchecked(&err) => {
            let msg = format!(
                "NATS {what} refused unchecked (another write to the key in flight); nothing written"
            );
            Error::new(ErrorKind::Unavailable, msg).with_key(key).with_source(err)
        }
        K::MaxPayloadExceeded => Error::new(ErrorKind::InvalidValue, "value is larger than the server takes")
            .with_key(key)
            .with_source(err),
        K::TimedOut => {
            Error::new(ErrorKind::Timeout, format!("NATS {what} timed out")).with_key(key).with_source(err)
        }
        K::BrokenPipe | K::StreamNotFound => {
            Error::new(ErrorKind::Unavailable, format!("NATS {what} failed")).with_key(key).with_source(err)
        }
        _ => wrap(what, Some(key), err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An API error as the server sends it.
    fn api_error(code: u16, err_code: u64, description: &str) -> jetstream::Error {
        let json = format!(r#"{{"code":{code},"err_code":{err_code},"description":"{description}"}}"#);
        serde_json::from_str(&json).expect("an API error")
    }

    #[test]
    fn only_a_checked_revision_is_a_conflict() {
        let wrong = api_error(400, 10071, "wrong last sequence: 7");
        assert_eq!(kind_of(&wrong), ErrorKind::Conflict);
        assert!(is_wrong_revision(&wrong) && !is_unchecked(&wrong));
        // A concurrent write in flight, or a leader not ready: the revision
        // was not checked, and may be current.
        for (code, err_code) in [(400, 10164), (503, 10163)] {
            let e = api_error(code, err_code, "wrong last sequence");
            assert_eq!(kind_of(&e), ErrorKind::Unavailable, "{err_code}");
            assert!(is_unchecked(&e) && !is_wrong_revision(&e), "{err_code}");
        }
    }
}
