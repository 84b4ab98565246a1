//! The behaviour suite through `DaprStateStore`.
//!
//! With `DAPR_GRPC_ENDPOINT` set (e.g. a sidecar from `docker compose up`,
//! `DAPR_API_TOKEN` if it wants one, `DAPR_STATE_STORE` naming a state
//! component with transactions and TTL, default `statestore`) the suite runs
//! against that real sidecar; otherwise against the in-process emulator.
//! What is specific to Dapr (token, sidecar late or gone) is tested in the
//! `purista-dapr-sdk` crate.

use std::sync::{Arc, OnceLock};

use purista_core::{StateStore, StoreConfig};
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
