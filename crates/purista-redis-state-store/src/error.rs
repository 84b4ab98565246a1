//! fred errors into `purista_core::Error` kinds, with the address and never
//! a password.

use std::{error::Error as StdError, fmt};

use fred::error::{Error as FredError, ErrorKind as FredKind};
use purista_core::{Error, ErrorKind};

/// Where the store connects to, and what must never show in an error.
#[derive(Clone)]
pub(crate) struct Target {
    /// `host:port` (or the cluster seeds, or the sentinels and service name).
    pub(crate) address: String,
    /// Passwords to scrub from any message that might echo them.
    pub(crate) secrets: Vec<String>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

/// A fred error whose text held a secret, with the secret replaced.
#[derive(Debug)]
struct Scrubbed(String);

impl fmt::Display for Scrubbed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Scrubbed {}

impl Target {
    /// Maps a fred error; `what` names the operation (`"MGET"` ...).
    pub(crate) fn error(&self, err: FredError, what: &str) -> Error {
        let addr = &self.address;
        let (kind, message) = match err.kind() {
            FredKind::Timeout => {
                (ErrorKind::Timeout, format!("redis at {addr} did not answer {what} in time"))
            }
            FredKind::IO
            | FredKind::Canceled
            | FredKind::Routing
            | FredKind::Cluster
            | FredKind::Sentinel
            | FredKind::Backpressure => {
                (ErrorKind::Unavailable, format!("redis at {addr} is unavailable ({what})"))
            }
            FredKind::Auth => {
                (ErrorKind::Unavailable, format!("redis at {addr} refused the credentials ({what})"))
            }
            FredKind::Config | FredKind::Url => {
                (ErrorKind::InvalidArgument, format!("invalid redis configuration for {addr} ({what})"))
            }
            _ if is_busy_or_down(&err) => {
                (ErrorKind::Unavailable, format!("redis at {addr} is unavailable ({what})"))
            }
            // Also inside a script's error text.
            _ if err.details().contains("WRONGTYPE") => (
                ErrorKind::Backend,
                format!("redis at {addr} failed {what}: the key holds a value that is not a string"),
            ),
            _ => (ErrorKind::Backend, format!("redis at {addr} failed {what}")),
        };
        self.with_source(Error::new(kind, message), err)
    }

    /// Attaches `err` as the source, scrubbed of secrets if it echoes one.
    pub(crate) fn with_source(&self, error: Error, err: FredError) -> Error {
        let text = err.to_string();
        if self.secrets.iter().any(|s| !s.is_empty() && text.contains(s.as_str())) {
            let mut clean = text;
            for s in self.secrets.iter().filter(|s| !s.is_empty()) {
                clean = clean.replace(s.as_str(), "***");
            }
            error.with_source(Scrubbed(clean))
        } else {
            error.with_source(err)
        }
    }
}

/// Server replies that mean "not now" (loading, failing over, read-only
/// replica), and fred's own words for a connection that is not there.
fn is_busy_or_down(err: &FredError) -> bool {
    let d = err.details();
    ["LOADING", "CLUSTERDOWN", "READONLY", "MASTERDOWN", "TRYAGAIN", "NOREPLICAS"]
        .iter()
        .any(|p| d.starts_with(p))
        || [
            "Failed to route command",
            "Too many failed write attempts",
            "Max attempts exceeded",
            "Missing expected connection",
            "Connection closed",
        ]
        .iter()
        .any(|p| d.contains(p))
}

/// Whether the server does not have a script cached (EVALSHA miss).
pub(crate) fn is_noscript(err: &FredError) -> bool {
    err.details().starts_with("NOSCRIPT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_no_password() {
        let t = Target { address: "127.0.0.1:6379".into(), secrets: vec!["s3cret".into()] };
        let e = t.error(FredError::new(FredKind::IO, "connection refused"), "GET");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.to_string().contains("127.0.0.1:6379"));
        assert!(StdError::source(&e).is_some());
        let e = t.error(FredError::new(FredKind::Timeout, "slow"), "SET");
        assert_eq!(e.kind(), ErrorKind::Timeout);
        let e = t.error(FredError::new(FredKind::Auth, "WRONGPASS for s3cret"), "AUTH");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(!format!("{e:?}").contains("s3cret"));
        let e = t.error(FredError::new(FredKind::Unknown, "LOADING Redis is loading"), "GET");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        let e = t.error(FredError::new(FredKind::Unknown, "Failed to route command."), "GET");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        let e = t.error(FredError::new(FredKind::Unknown, "WRONGTYPE"), "GET");
        assert_eq!(e.kind(), ErrorKind::Backend);
        assert!(e.to_string().contains("not a string"), "{e}");
    }
}
