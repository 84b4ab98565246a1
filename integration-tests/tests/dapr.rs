//! The behaviour suite through `DaprStateStore`.
//!
//! With `DAPR_GRPC_ENDPOINT` set (e.g. a sidecar from `docker compose up`,
//! `DAPR_API_TOKEN` if it wants one, `DAPR_STATE_STORE` naming a state
//! component with transactions and TTL, default `statestore`) the suite runs
//! against that real sidecar; otherwise against the in-process emulator.

use std::{
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use purista_core::{ErrorKind, StateStore, StateStoreExt, StoreConfig};
use purista_dapr_sdk::{DaprConfig, DaprStateStore, emulator::Sidecar};

const EMULATOR_TOKEN: &str = "integration-token";

enum Target {
    Real(DaprConfig),
    Emulated(Sidecar),
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| match std::env::var("DAPR_GRPC_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => {
            let store = std::env::var("DAPR_STATE_STORE").unwrap_or_else(|_| "statestore".into());
            eprintln!("dapr suite: real sidecar at {endpoint}, state store {store:?}");
            Target::Real(DaprConfig::from_env().store_name(store))
        }
        _ => {
            eprintln!("dapr suite: DAPR_GRPC_ENDPOINT unset, running against the in-process emulator");
            let sidecar = Sidecar::builder()
                .app_id("integration")
                .api_token(EMULATOR_TOKEN)
                .start_on_thread()
                .expect("start the Dapr emulator");
            Target::Emulated(sidecar)
        }
    })
}

fn config() -> DaprConfig {
    match target() {
        Target::Real(config) => config.clone(),
        Target::Emulated(sidecar) => {
            DaprConfig::default().endpoint(sidecar.endpoint()).api_token(EMULATOR_TOKEN)
        }
    }
}

async fn store(config: StoreConfig) -> Option<Arc<dyn StateStore>> {
    let store =
        DaprStateStore::connect(self::config().store_config(config)).await.expect("connect to the sidecar");
    Some(Arc::new(store))
}

purista_core::behaviour_suite!(store);

#[tokio::test]
async fn wrong_and_missing_token_are_unavailable() {
    if matches!(target(), Target::Real(c) if !c.has_api_token()) {
        eprintln!("skipped: the real sidecar is not configured with an API token");
        return;
    }
    let wrong = DaprStateStore::connect(config().api_token("not-the-token")).await.unwrap();
    let err = wrong.get::<i32>("k").await.expect_err("wrong token");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    assert!(!format!("{err:?}").contains("not-the-token"));
    let missing = DaprStateStore::connect(config().no_api_token()).await.unwrap();
    let err = missing.set("k", &1).await.expect_err("missing token");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
}

#[tokio::test]
async fn sidecar_starting_late_then_gone() {
    // Emulator only: a real sidecar cannot be started and stopped from here.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let timeout = Duration::from_secs(2);
    let config = DaprConfig::default()
        .endpoint(format!("http://{addr}"))
        .wait_for_sidecar(Duration::from_secs(10))
        .request_timeout(timeout);
    let connecting = tokio::spawn(DaprStateStore::connect(config));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!connecting.is_finished(), "waiting for the sidecar");
    let sidecar = Sidecar::builder().bind(addr).start().await.expect("bind the chosen port");
    let store = connecting.await.unwrap().expect("connected once the sidecar is up");
    store.set("late", &1).await.unwrap();
    assert_eq!(store.get::<i32>("late").await.unwrap(), Some(1));

    drop(sidecar);
    let started = Instant::now();
    let err = store.get::<i32>("late").await.expect_err("the sidecar is gone");
    assert!(started.elapsed() <= timeout + Duration::from_millis(500), "no hang");
    assert!(matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout), "{err:?}");
}
