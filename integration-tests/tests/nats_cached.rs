//! The behaviour suite through a near cache on NATS JetStream KV: each
//! instance is its own `CachedStore` over its own connection. Cases that need
//! every read fresh are skipped; the `cache` cases check the cache's rules.

mod support_nats;

use std::sync::Arc;

use purista_core::{CacheOptions, CachedStore, StateStore, StoreConfig};

async fn store(config: StoreConfig) -> Option<Arc<dyn StateStore>> {
    let inner = support_nats::store(config).await?;
    match CachedStore::new(inner, CacheOptions::default()).await {
        Ok(cached) => Some(cached),
        Err(e) => panic!("a near cache over NATS: {e}"),
    }
}

purista_core::behaviour_suite!(store);
