//! A store on the 3-node JetStream cluster of the fixtures
//! (`integration_tests::fixtures::nats_cluster`), once it can hold one.

use std::time::{Duration, Instant};

use purista_nats_state_store::{NatsStateStore, NatsStateStoreBuilder};

/// Connects `builder()` once JetStream has a meta leader (the bucket cannot
/// be made before), retrying for up to 30 s.
pub async fn connect(builder: impl Fn() -> NatsStateStoreBuilder) -> NatsStateStore {
    let started = Instant::now();
    loop {
        match builder().connect().await {
            Ok(store) => {
                eprintln!("3-node cluster ready in {:?}", started.elapsed());
                return store;
            }
            Err(e) if started.elapsed() < Duration::from_secs(30) => {
                eprintln!("cluster not ready: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("cluster never became ready: {e}"),
        }
    }
}
