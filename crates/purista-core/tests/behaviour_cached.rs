//! The whole behaviour suite through a near cache on the reference store:
//! each instance is its own `CachedStore` over its own handle on one data set.
//! Cases that need every read fresh are skipped (the cache declares
//! `stale_reads`); the `cache` cases check its own rules.

use std::sync::{Arc, LazyLock};

use purista_core::{DefaultStateStore, StateStore, StoreConfig, testkit};

static SHARED: LazyLock<DefaultStateStore> = LazyLock::new(DefaultStateStore::new);

async fn store(config: StoreConfig) -> Option<Arc<dyn StateStore>> {
    Some(Arc::new(SHARED.with_config(config)))
}

fn main() -> std::process::ExitCode {
    testkit::main(testkit::cached(store))
}
