#![doc = include_str!("../README.md")]

pub mod backend;
pub mod cache;
mod config;
mod error;
mod ext;
mod handle;
mod json;
mod key;
pub mod lease;
mod memory;
mod rate_limit;
mod service;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use cache::{CacheMetrics, CacheOptions, CachedStore};
pub use config::{GET_DISABLED, REMOVE_DISABLED, SET_DISABLED, StoreConfig};
pub use error::{Error, ErrorKind, Result};
pub use ext::{StateStoreExt, UPDATE_ATTEMPTS, Versioned};
pub use json::Json;
pub use key::{MAX_KEY_BYTES, validate_key};
pub use lease::{Election, Lease, LockGuard, Role, Roles};
pub use memory::DefaultStateStore;
pub use rate_limit::{Decision, RateLimit, RateLimited};
pub use service::{Context, HandlerError, Service, ServiceBuilder, ServiceInfo};
pub use store::{
    Call, Capabilities, Capability, ETag, Entry, Op, PutMode, PutOptions, StateMap, StateStore, WatchEvent,
    WatchKind, WatchStream,
};
