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

/// Whether a status reports a gRPC message over a size limit: the sidecar's
/// (grpc-go: `ResourceExhausted`, "received/trying to send message larger
/// than max") or this client's (tonic: `OutOfRange`, "decoded message
/// length too large").
pub(crate) fn is_too_large(status: &Status) -> bool {
    let message = status.message();
    matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange)
        && (message.contains("larger than max") || message.contains("message length too large"))
}

/// The kind a status maps onto.
pub(crate) fn kind_of(status: &Status) -> ErrorKind {
    // An answer over a size limit is no fault of the caller's arguments
    // (a write over it is: `from_status` makes that `InvalidValue`).
    if is_too_large(status) {
        return ErrorKind::Backend;
    }
    let message = status.message().to_ascii_lowercase();
    match status.code() {
        Code::Unauthenticated | Code::Unavailable | Code::PermissionDenied => ErrorKind::Unavailable,
        Code::DeadlineExceeded => ErrorKind::Timeout,
        // tonic's own request timeout.
        Code::Cancelled if message.contains("timeout expired") => ErrorKind::Timeout,
        // This client cancels no call but by its timeout: any other
        // cancellation is h2's for a connection that closed under the call.
        Code::Cancelled => ErrorKind::Unavailable,
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
        // A connection that broke under the call.
        Code::Unknown if message.contains("transport error") => ErrorKind::Unavailable,
        _ => ErrorKind::Backend,
    }
}

/// Ops that send values: a request over the sidecar's limit means a value
/// too large for it.
const WRITES: [&str; 2] = ["save", "transaction"];

/// A core error for a failed `op` (`"save"`, `"get"` ...), keeping the
/// status message and the status as its source.
pub(crate) fn from_status(status: Status, op: &str, key: Option<&str>) -> Error {
    let too_large = is_too_large(&status);
    let kind = if too_large && WRITES.contains(&op) { ErrorKind::InvalidValue } else { kind_of(&status) };
    let message = match status.code() {
        Code::Unauthenticated => {
            format!("dapr {op}: the sidecar refused the API token: {}", status.message())
        }
        _ if too_large => format!(
            "dapr {op}: over the gRPC message size limit (the sidecar's --max-body-size, \
             4 MiB by default, or DaprConfig::max_message_size on this side): {}",
            status.message()
        ),
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
            (Status::cancelled("operation was canceled"), ErrorKind::Unavailable),
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
            (
                Status::resource_exhausted(
                    "grpc: trying to send message larger than max (6000042 vs. 4194304)",
                ),
                ErrorKind::Backend,
            ),
            (
                Status::out_of_range(
                    "Error, decoded message length too large: found 6000042 bytes, the limit is: 4194304 bytes",
                ),
                ErrorKind::Backend,
            ),
            (Status::resource_exhausted("quota"), ErrorKind::Backend),
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

    #[test]
    fn a_request_over_the_limit_is_a_value_too_large_only_on_writes() {
        let status =
            || Status::resource_exhausted("grpc: received message larger than max (5000042 vs. 4194304)");
        let err = from_status(status(), "save", Some("k"));
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
        assert!(err.message().contains("--max-body-size"), "{err}");
        assert_eq!(from_status(status(), "transaction", None).kind(), ErrorKind::InvalidValue);
        assert_eq!(from_status(status(), "bulk get", Some("k")).kind(), ErrorKind::Backend);
    }
}
