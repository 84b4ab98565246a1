//! gRPC status codes onto the core's error kinds.

use std::fmt;

use purista_core::{Error, ErrorKind};
use tonic::{Code, Status};

/// The sidecar's answer, kept as the [`source`](std::error::Error::source)
/// of every error that came from a gRPC status: downcast to it for the exact
/// code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcError {
    code: Code,
    message: String,
}

impl GrpcError {
    /// The gRPC status code.
    pub fn code(&self) -> Code {
        self.code
    }
    /// The status message as the sidecar sent it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for GrpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message is already the core error's own: show only the code.
        write!(f, "gRPC status {:?}", self.code)
    }
}

impl std::error::Error for GrpcError {}

/// Whether a status reports an ETag mismatch (or a first-write over an
/// existing key, which Dapr reports the same way).
pub(crate) fn is_etag_mismatch(status: &Status) -> bool {
    status.code() == Code::Aborted
        || (status.code() == Code::Internal
            && status.message().to_ascii_lowercase().contains("etag mismatch"))
}

/// The kind a status maps onto.
pub(crate) fn kind_of(status: &Status) -> ErrorKind {
    let message = status.message().to_ascii_lowercase();
    match status.code() {
        Code::Unauthenticated | Code::Unavailable | Code::PermissionDenied => ErrorKind::Unavailable,
        Code::DeadlineExceeded => ErrorKind::Timeout,
        // tonic's own request timeout.
        Code::Cancelled if message.contains("timeout expired") => ErrorKind::Timeout,
        Code::Aborted => ErrorKind::Conflict,
        Code::Internal if message.contains("etag mismatch") => ErrorKind::Conflict,
        Code::Unimplemented => ErrorKind::Unsupported,
        Code::InvalidArgument | Code::FailedPrecondition => {
            if message.contains("etag") || message.contains("state store") {
                ErrorKind::InvalidArgument
            } else if message.contains("key") {
                ErrorKind::InvalidKey
            } else if message.contains("value") || message.contains("json") {
                ErrorKind::InvalidValue
            } else {
                ErrorKind::InvalidArgument
            }
        }
        Code::ResourceExhausted | Code::OutOfRange if message.contains("message length too large") => {
            ErrorKind::InvalidValue
        }
        // A connection that broke under the call.
        Code::Unknown if message.contains("transport error") => ErrorKind::Unavailable,
        _ => ErrorKind::Backend,
    }
}

/// A core error for a failed `op` (`"save"`, `"get"` ...), keeping the
/// status message and the status as its source.
pub(crate) fn from_status(status: Status, op: &str, key: Option<&str>) -> Error {
    let kind = kind_of(&status);
    let message = match status.code() {
        Code::Unauthenticated => {
            format!("dapr {op}: the sidecar refused the API token: {}", status.message())
        }
        _ => format!("dapr {op}: {}", status.message()),
    };
    let source = GrpcError { code: status.code(), message: status.message().to_string() };
    let error = Error::new(kind, message).with_source(source);
    match key {
        Some(key) => error.with_key(key),
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_onto_kinds() {
        let cases = [
            (Status::unauthenticated("missing api token in request metadata"), ErrorKind::Unavailable),
            (Status::unavailable("connection refused"), ErrorKind::Unavailable),
            (Status::deadline_exceeded("too slow"), ErrorKind::Timeout),
            (Status::cancelled("Timeout expired"), ErrorKind::Timeout),
            (Status::aborted("failed saving state: possible etag mismatch"), ErrorKind::Conflict),
            (
                Status::internal(
                    "error while executing state transaction: possible etag mismatch. error from state store",
                ),
                ErrorKind::Conflict,
            ),
            (Status::internal("boom"), ErrorKind::Backend),
            (Status::unimplemented("no transactions"), ErrorKind::Unsupported),
            (Status::invalid_argument("state store nope is not found"), ErrorKind::InvalidArgument),
            (
                Status::invalid_argument("failed saving state in state store s: invalid etag value"),
                ErrorKind::InvalidArgument,
            ),
            (
                Status::invalid_argument("input key/keyPrefix 'a||b' can't contain '||'"),
                ErrorKind::InvalidKey,
            ),
            (Status::unknown("transport error"), ErrorKind::Unavailable),
        ];
        for (status, kind) in cases {
            assert_eq!(kind_of(&status), kind, "{status:?}");
        }
    }

    #[test]
    fn errors_keep_message_key_and_code() {
        let err = from_status(Status::aborted("possible etag mismatch"), "save", Some("k"));
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert_eq!(err.key(), Some("k"));
        assert!(err.message().contains("possible etag mismatch"));
        let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<GrpcError>()).unwrap();
        assert_eq!(source.code(), Code::Aborted);
    }
}
