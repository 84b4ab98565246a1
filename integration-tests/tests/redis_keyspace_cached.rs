//! The behaviour suite through a near cache on the shared Redis, the cache
//! following keyspace notifications (`CacheFeed::KeyspaceNotifications`)
//! rather than `CLIENT TRACKING`, the default that `redis_cached.rs` runs.

mod support_redis;

use std::sync::Arc;

use integration_tests::fixtures;
use purista_core::{StateStore, StoreConfig};
use purista_redis_state_store::CacheFeed;

async fn store(config: StoreConfig) -> Option<Arc<dyn StateStore>> {
    let server = fixtures::redis().await?;
    let builder = support_redis::builder(server.url()).cache_feed(CacheFeed::KeyspaceNotifications);
    Some(Arc::new(builder.store_config(config).connect().await.expect("connect to the shared redis")))
}

fn main() -> std::process::ExitCode {
    purista_core::testkit::main(purista_core::testkit::cached(store))
}
