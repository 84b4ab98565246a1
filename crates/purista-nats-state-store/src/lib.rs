#![doc = include_str!("../README.md")]

pub use async_nats;

mod batch_get;
mod bucket;
mod builder;
mod entry;
mod error;
pub mod key;
mod list;
mod reads;
mod store;
mod transaction;
mod write;

pub use bucket::{BucketSettings, DEFAULT_BUCKET, Storage};
pub use builder::{NatsStateStoreBuilder, RemoveMode};
pub use error::NO_JETSTREAM;
pub use key::MAX_NATS_KEY_BYTES;
pub use store::NatsStateStore;
pub use transaction::MAX_TRANSACTION_OPS;
