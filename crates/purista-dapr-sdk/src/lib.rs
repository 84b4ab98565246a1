//! PURISTA state stores for Rust over the [Dapr](https://dapr.io) sidecar.
//!
//! [`DaprStateStore`] implements the `purista-core` contract through the
//! sidecar's gRPC state API, so the backing store (Redis, PostgreSQL,
//! Cosmos DB, DynamoDB ...) is a Dapr component chosen outside the code.
//! [`DaprEventBridge`] is configured as in PURISTA (API token, state, secret
//! and config store names) and hands its state store to the services built
//! on it. With the `emulator` feature, `emulator::Sidecar` is an in-process
//! stand-in for the sidecar, for tests without `daprd`.
//!
//! The example is `no_run` only because it needs a sidecar.
//!
//! ```no_run
//! use purista_core::StateStoreExt;
//! use purista_dapr_sdk::{DaprEventBridge, DaprEventBridgeConfig};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // DAPR_GRPC_ENDPOINT (else DAPR_GRPC_PORT) and DAPR_API_TOKEN come from
//! // the environment, as the Dapr SDKs read them.
//! let config = DaprEventBridgeConfig::from_env()
//!     .state_store_name("my-state-store")
//!     .secret_store_name("my-secret-store")
//!     .config_store_name("my-config-store");
//! let bridge = DaprEventBridge::connect(config).await?;
//!
//! let service = bridge
//!     .service("counter", "1")
//!     .command("hit", |ctx, page: String| async move {
//!         let key = format!("hits:{page}");
//!         let hits = ctx.states.update(&key, None, |n: Option<u64>| n.unwrap_or(0) + 1).await?;
//!         Ok(hits)
//!     })
//!     .build();
//!
//! let hits: u64 = service.invoke("hit", &"home").await?;
//! assert!(hits >= 1);
//! # Ok(()) }
//! ```
//!
//! The same code runs in tests without a sidecar: start an
//! `emulator::Sidecar` (feature `emulator`) and point the config's endpoint
//! at it, as the `emulator` module's example does.
//!
//! What reaches the sidecar: one `GetBulkState` per `get_state` (split
//! while an answer is over a gRPC message size limit), JSON
//! values with `contentType=application/json`, TTLs as `ttlInSeconds`,
//! ETags and first-write concurrency on the state item, transactions as
//! `ExecuteStateTransaction`, the API token as `dapr-api-token` metadata
//! only. See [`DaprStateStore`] for how errors are reported.

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
