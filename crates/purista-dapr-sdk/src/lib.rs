#![doc = include_str!("../README.md")]

mod bridge;
mod config;
mod conn;
mod error;
mod read;
mod store;
mod transaction;

#[cfg(feature = "emulator")]
#[cfg_attr(docsrs, doc(cfg(feature = "emulator")))]
pub mod emulator;

pub use bridge::{DaprEventBridge, DaprEventBridgeConfig};
pub use config::{
    Concurrency, Consistency, DEFAULT_GRPC_PORT, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_STATE_STORE, DaprConfig,
};
pub use conn::{Client, TokenInterceptor};
pub use error::GrpcError;
pub use store::DaprStateStore;

/// The `dapr` crate, whose generated client and types this crate uses.
pub use dapr;
/// The `tonic` crate the generated client runs on.
pub use tonic;

/// The gRPC metadata carrying the API token.
pub const API_TOKEN_HEADER: &str = "dapr-api-token";
/// Item metadata naming the TTL in seconds.
pub const TTL_KEY: &str = "ttlInSeconds";
/// Read metadata reporting when a value expires (RFC 3339).
pub const TTL_EXPIRE_TIME_KEY: &str = "ttlExpireTime";
/// Item metadata naming the value's content type.
pub const CONTENT_TYPE_KEY: &str = "contentType";
/// The content type of every value this crate writes.
pub const CONTENT_TYPE_JSON: &str = "application/json";
