//! The generic watch cases (`testkit::watch_*`) on the reference store,
//! until the behaviour suite lists them.

use std::sync::{Arc, LazyLock};

use purista_core::{DefaultStateStore, StateStore, StoreConfig, testkit};

/// One data set, as one server would be: a second instance sees the first's
/// writes (`watch_foreign_writers`).
static SHARED: LazyLock<DefaultStateStore> = LazyLock::new(DefaultStateStore::new);

async fn store(config: StoreConfig) -> Option<Arc<dyn StateStore>> {
    Some(Arc::new(SHARED.reconfigured(config)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_burst_transaction() {
    testkit::watch_burst_transaction(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_concurrent_writers() {
    testkit::watch_concurrent_writers(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_foreign_writers() {
    testkit::watch_foreign_writers(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_expiry() {
    testkit::watch_expiry(&store).await;
}
