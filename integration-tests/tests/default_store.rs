//! The in-memory default store through the same frame as every backend.

use std::sync::{Arc, LazyLock};

use purista_core::{DefaultStateStore, StateStore, StoreConfig};

// One data set, as one server would be, so two configs can share it.
static SHARED: LazyLock<DefaultStateStore> = LazyLock::new(DefaultStateStore::new);

async fn store(config: StoreConfig) -> Option<Arc<dyn StateStore>> {
    Some(Arc::new(SHARED.reconfigured(config)))
}

purista_core::behaviour_suite!(store);
