//! PURISTA's state stores for Rust: business state that survives restarts
//! and is shared across service instances (sessions, counters, job status,
//! rate-limit windows), behind one contract with interchangeable backends.
//!
//! Handlers see a [`StateStore`] as `context.states`; typed access comes from
//! [`StateStoreExt`]. This crate holds the contract, the base config every
//! store shares ([`StoreConfig`]), the in-memory [`DefaultStateStore`], and a
//! small service runtime ([`Service`]). The adapters live in their own crates:
//! `purista-redis-state-store`, `purista-nats-state-store`, `purista-dapr-sdk`.
//!
//! ```
//! use purista_core::{DefaultStateStore, Service, StateStoreExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let service = Service::builder("counter", "1")
//!     // The one line that changes per backend:
//!     .state_store(DefaultStateStore::new())
//!     .command("hit", |ctx, page: String| async move {
//!         let key = format!("hits:{page}");
//!         let hits = ctx.states.update(&key, None, |n: Option<u64>| n.unwrap_or(0) + 1).await?;
//!         Ok(hits)
//!     })
//!     .build();
//!
//! let hits: u64 = service.invoke("hit", &"home").await?;
//! assert_eq!(hits, 1);
//! assert_eq!(service.states().get::<u64>("hits:home").await?, Some(1));
//! service.destroy().await?;
//! # Ok(()) }
//! ```
//!
//! Writing a backend means implementing [`backend::Backend`]; the core then
//! validates keys, enforces the [`StoreConfig`], checks [`Capabilities`],
//! rounds TTLs and traces every call, the same way for every store.

pub mod backend;
mod config;
mod error;
mod ext;
mod handle;
mod json;
mod key;
mod memory;
mod service;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::{GET_DISABLED, REMOVE_DISABLED, SET_DISABLED, StoreConfig};
pub use error::{Error, ErrorKind, Result};
pub use ext::{StateStoreExt, UPDATE_ATTEMPTS, Versioned};
pub use json::Json;
pub use key::{MAX_KEY_BYTES, validate_key};
pub use memory::DefaultStateStore;
pub use service::{Context, HandlerError, Service, ServiceBuilder, ServiceInfo};
pub use store::{
    Capabilities, Capability, ETag, Entry, Op, PutMode, PutOptions, StateMap, StateStore, WatchEvent,
    WatchKind, WatchStream,
};
