//! The reference store passes the whole behaviour suite.

use std::sync::{Arc, LazyLock};

use purista_core::{DefaultStateStore, StateStore, StoreConfig};

/// One data set for the whole run, as one server would be: the cases that
/// need two configs over the same data (disabled flags, key prefix) get them.
static SHARED: LazyLock<DefaultStateStore> = LazyLock::new(DefaultStateStore::new);

async fn store(config: StoreConfig) -> Option<Arc<dyn StateStore>> {
    Some(Arc::new(SHARED.with_config(config)))
}

purista_core::behaviour_suite!(store);
