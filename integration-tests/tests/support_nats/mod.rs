//! Helpers for the NATS test files: a store on the shared server, each test
//! on a bucket of its own so that tests can run in parallel.

#![allow(dead_code)]

pub mod cluster;
pub mod proxy;
pub mod tls;

use std::sync::{Arc, OnceLock};

use purista_core::{StateStore, StoreConfig, testkit::unique};
use purista_nats_state_store::{NatsStateStore, NatsStateStoreBuilder, Storage};

/// The shared NATS server's URL, or `None` (the fixtures said why).
pub async fn url() -> Option<String> {
    integration_tests::fixtures::nats().await.map(|s| s.url().to_owned())
}

/// The keys NATS cannot hold as they are, plus a few it can.
pub const EDGE: [&str; 14] =
    ["session:abc", "a b", "ключ", "🔑", "..", ".", "a.", ".a", "a..b", "*", ">", "a.*", "a=b", "user.42"];

/// A bucket name no other test uses (`[a-zA-Z0-9_-]+`).
pub fn bucket(name: &str) -> String {
    unique(name).replace(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'), "_")
}

/// A builder for `url` on a fresh memory bucket.
pub fn builder(url: &str, name: &str) -> NatsStateStoreBuilder {
    NatsStateStore::builder().server(url).bucket(bucket(name)).storage(Storage::Memory)
}

/// A store on the shared server, on one bucket per test binary: stores built
/// for one test see each other's data (the suite relies on it); keys are
/// unique per test.
pub async fn store(config: StoreConfig) -> Option<Arc<dyn StateStore>> {
    static BUCKET: OnceLock<String> = OnceLock::new();
    let url = url().await?;
    let bucket = BUCKET.get_or_init(|| bucket("suite"));
    let store = NatsStateStore::builder()
        .server(url)
        .bucket(bucket)
        .storage(Storage::Memory)
        .store_config(config)
        .connect()
        .await
        .expect("connect to NATS");
    Some(Arc::new(store))
}

/// A raw async-nats JetStream context on `url`.
pub async fn raw(url: &str) -> async_nats::jetstream::Context {
    async_nats::jetstream::new(async_nats::connect(url).await.expect("raw connect"))
}
