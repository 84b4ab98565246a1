#![doc = include_str!("../README.md")]

pub use fred;

mod builder;
mod counter;
mod entries;
mod error;
mod etag;
mod lease;
mod list;
mod redirect;
mod replicas;
mod scripts;
mod sentinel;
mod store;
mod transaction;
mod watch;

pub use builder::{DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, RedisStoreBuilder};
pub use replicas::DEFAULT_SENTINEL_WAIT;
pub use store::{RedisStateStore, STORE_NAME};
pub use watch::CacheFeed;
