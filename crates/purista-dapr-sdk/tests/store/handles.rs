//! Handles sharing one connection: the event bridge's stores, clones,
//! stores with another config.

use purista_core::{ETag, ErrorKind, Json, PutOptions, StateStore, StateStoreExt, StoreConfig};
use purista_dapr_sdk::{DaprConfig, DaprEventBridge, DaprEventBridgeConfig};
use serde_json::json;

use crate::support::{TOKEN, expect_kind, sidecar};

#[tokio::test]
async fn bridge_shares_its_connection() {
    let bridge_config = DaprEventBridgeConfig::default()
        .with_dapr(DaprConfig::default().endpoint(sidecar().endpoint()))
        .api_token(TOKEN)
        .state_store_name("statestore")
        .secret_store_name("secrets")
        .config_store_name("config");
    let bridge = DaprEventBridge::connect(bridge_config).await.unwrap();
    assert_eq!(bridge.state_store_name(), "statestore");
    assert_eq!(bridge.secret_store_name(), Some("secrets"));
    assert_eq!(bridge.config_store_name(), Some("config"));
    let service = bridge
        .service("counter", "1")
        .command("hit", |ctx, _: ()| async move {
            Ok(ctx.states.update("hits", None, |n: Option<u64>| n.unwrap_or(0) + 1).await?)
        })
        .build();
    let first: u64 = service.invoke("hit", &()).await.unwrap();
    let second: u64 = service.invoke("hit", &()).await.unwrap();
    assert_eq!(second, first + 1);
    let scoped = bridge.state_store().with_config(StoreConfig::default().enable_set(false));
    expect_kind(scoped.set("x", &1).await, ErrorKind::Disabled);
    assert!(!format!("{bridge:?}").contains(TOKEN));
    // An invalid ETag value is a conflict, not a usage error.
    let err = expect_kind(
        bridge.state_store().put("hits", Json::from(json!(0)), PutOptions::update(ETag::new("nope"))).await,
        ErrorKind::Conflict,
    );
    assert_eq!(err.key(), Some("hits"));
    assert_eq!(bridge.state_store().name(), "DaprStateStore");
}

#[tokio::test]
async fn destroying_one_handle_leaves_the_others_working() {
    let bridge_config = DaprEventBridgeConfig::default()
        .with_dapr(DaprConfig::default().endpoint(sidecar().endpoint()))
        .api_token(TOKEN);
    let bridge = DaprEventBridge::connect(bridge_config).await.unwrap();
    let first = bridge.state_store();
    let scoped = first.with_config(StoreConfig::default().key_prefix("scoped:"));
    let clone = first.clone();
    let key = purista_core::testkit::unique("destroy");
    first.set(&key, &1).await.unwrap();
    first.destroy().await.expect("destroy");
    clone.set(&key, &2).await.expect("a clone still works");
    assert_eq!(scoped.get::<i32>(&key).await.unwrap(), None);
    scoped.set(&key, &3).await.expect("a store with another config still works");
    assert_eq!(bridge.state_store().get::<i32>(&key).await.unwrap(), Some(2));
    bridge.state_store().remove_state(&key).await.unwrap();
    scoped.remove_state(&key).await.unwrap();
}
