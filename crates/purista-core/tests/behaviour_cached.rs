//! The whole behaviour suite through a near cache on the reference store:
//! each instance is its own `CachedStore` over its own handle on one data set.
//! Cases that need every read fresh are skipped (the cache declares
//! `stale_reads`); the `cache` cases check its own rules.

use std::sync::{Arc, LazyLock};

use purista_core::{CacheOptions, CachedStore, DefaultStateStore, StateStore, StoreConfig};

static SHARED: LazyLock<DefaultStateStore> = LazyLock::new(DefaultStateStore::new);

async fn store(config: StoreConfig) -> Option<Arc<dyn StateStore>> {
    let inner: Arc<dyn StateStore> = Arc::new(SHARED.with_config(config));
    match CachedStore::new(inner, CacheOptions::default()).await {
        Ok(cached) => Some(cached),
        Err(e) => panic!("a near cache over the memory store: {e}"),
    }
}

purista_core::behaviour_suite!(store);
