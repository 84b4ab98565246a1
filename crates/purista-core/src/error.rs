//! One error type for every store, with a small set of kinds callers match on.

use std::{error::Error as StdError, fmt};

/// What went wrong, in terms a caller can act on.
///
/// New kinds may be added; match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The operation is switched off by the store's config (`enable_get` ...).
    Disabled,
    /// The key is empty, too long, or cannot be stored by this backend.
    InvalidKey,
    /// The value is not JSON, does not decode into the requested type, or is
    /// too large for the backend.
    InvalidValue,
    /// An argument other than key or value is out of range (a zero TTL ...).
    InvalidArgument,
    /// An ETag did not match, or a create-only write found the key present.
    Conflict,
    /// The store does not have this capability.
    Unsupported,
    /// The backend cannot be reached, or refused the credentials.
    Unavailable,
    /// The backend did not answer in time.
    Timeout,
    /// Any other backend failure.
    Backend,
}

impl ErrorKind {
    /// The HTTP-valued status PURISTA reports for this kind.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::Disabled => 401,
            ErrorKind::InvalidKey | ErrorKind::InvalidValue | ErrorKind::InvalidArgument => 400,
            ErrorKind::Conflict => 409,
            ErrorKind::Unsupported => 501,
            ErrorKind::Unavailable => 503,
            ErrorKind::Timeout => 504,
            ErrorKind::Backend => 500,
        }
    }
}

type Source = Box<dyn StdError + Send + Sync + 'static>;

/// A state store error: a kind, a message, the key involved if any, and the
/// underlying cause as [`source`](StdError::source).
///
/// One pointer wide: every call's `Result` passes through several layers
/// (backend, rules, span, caller), and a success should not carry the
/// room of a failure's strings through each of them.
pub struct Error(Box<Inner>);

const _: () = assert!(size_of::<Error>() == size_of::<usize>());

struct Inner {
    kind: ErrorKind,
    message: String,
    key: Option<String>,
    source: Option<Source>,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with a message. Messages must never hold secrets.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error(Box::new(Inner { kind, message: message.into(), key: None, source: None }))
    }

    /// Attaches the key the error is about.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.0.key = Some(key.into());
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.0.source = Some(source.into());
        self
    }

    /// The operation is switched off by config. `message` is PURISTA's text.
    pub fn disabled(message: &'static str) -> Self {
        Error::new(ErrorKind::Disabled, message)
    }

    /// A conflict on `key`: ETag mismatch or create-only over an existing key.
    pub fn conflict(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Conflict, message).with_key(key)
    }

    // Both conflicts share one kind, as Dapr's sidecar answers both the same
    // way (`Aborted`, "possible etag mismatch"): a kind of its own for each
    // could not be kept on every backend. The messages tell them apart.

    /// A conflict on `key`: its ETag does not match (or it is missing).
    pub fn etag_mismatch(key: impl Into<String>) -> Self {
        Error::conflict(key, "etag does not match")
    }

    /// A conflict on `key`: a create-only write found a value.
    pub fn already_exists(key: impl Into<String>) -> Self {
        Error::conflict(key, "key already exists")
    }

    /// What a watcher yields after losing `dropped` events: the stream goes
    /// on, and the caller re-reads the keys it follows.
    pub fn watch_lagged(dropped: u64) -> Self {
        let msg = format!("watcher fell behind: {dropped} events were dropped; read the watched keys afresh");
        Error::new(ErrorKind::Backend, msg)
    }

    /// What a watcher yields (kind [`ErrorKind::Unavailable`]) as soon as it
    /// knows its connection is lost; `detail` says which and why. The stream
    /// goes on and events flow again once the store has reconnected, but the
    /// consumer must assume events are missing from here on: any watched key
    /// may have changed (or vanished with a server that lost its data), so
    /// it forgets what it derived from earlier events and reads afresh. A
    /// backend that cannot replay the gap yields another error when the
    /// watch resumes; what was read before that error may be stale too.
    pub fn watch_interrupted(detail: impl std::fmt::Display) -> Self {
        let msg = format!("watch interrupted: {detail}; changes may be missed: read the watched keys afresh");
        Error::new(ErrorKind::Unavailable, msg)
    }

    /// The store lacks a capability.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unsupported, message)
    }

    /// The same error for another caller: kind, message, key, and the
    /// cause's text (a cause is not `Clone`).
    pub(crate) fn duplicate(&self) -> Error {
        let Inner { kind, message, key, source } = &*self.0;
        Error(Box::new(Inner {
            kind: *kind,
            message: message.clone(),
            key: key.clone(),
            source: source.as_ref().map(|s| s.to_string().into()),
        }))
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The HTTP-valued status code (PURISTA's convention).
    pub fn status(&self) -> u16 {
        self.0.kind.status()
    }

    /// The message, without key or cause.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The key the error is about, as the caller named it.
    pub fn key(&self) -> Option<&str> {
        self.0.key.as_deref()
    }

    /// Rewrites the key (used to strip a store's key prefix before the error
    /// reaches the caller).
    pub(crate) fn map_key(mut self, f: impl FnOnce(String) -> String) -> Self {
        self.0.key = self.0.key.map(f);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)?;
        if let Some(key) = &self.0.key {
            // Debug-quote the key: it may hold spaces or control characters.
            write!(f, " (key {key:?})")?;
        }
        if let Some(source) = &self.0.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.0.kind).field("message", &self.0.message);
        if let Some(key) = &self.0.key {
            d.field("key", key);
        }
        if let Some(source) = &self.0.source {
            d.field("source", &format_args!("{source}"));
        }
        d.finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source.as_deref().map(|s| s as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_purista() {
        let cases = [
            (ErrorKind::Disabled, 401),
            (ErrorKind::InvalidKey, 400),
            (ErrorKind::InvalidValue, 400),
            (ErrorKind::InvalidArgument, 400),
            (ErrorKind::Conflict, 409),
            (ErrorKind::Unsupported, 501),
            (ErrorKind::Unavailable, 503),
            (ErrorKind::Timeout, 504),
            (ErrorKind::Backend, 500),
        ];
        for (kind, status) in cases {
            assert_eq!(kind.status(), status, "{kind:?}");
        }
    }

    #[test]
    fn display_keeps_key_and_cause() {
        let io = std::io::Error::other("connection reset");
        let err = Error::new(ErrorKind::Unavailable, "redis unreachable").with_key("a b").with_source(io);
        assert_eq!(err.to_string(), "redis unreachable (key \"a b\"): connection reset");
        assert!(err.source().is_some());
    }
}
