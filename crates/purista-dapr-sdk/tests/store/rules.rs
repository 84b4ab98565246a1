//! What Dapr's state API allows and refuses, through the adapter: keys under
//! the app id, the `||` separator, no list or watch, unknown components,
//! components without transactions or TTLs, conflicts.

use std::time::Duration;

use purista_core::{ErrorKind, Json, Op, PutOptions, StateStore, StateStoreExt};
use purista_dapr_sdk::{Concurrency, DaprConfig, DaprStateStore, emulator::Sidecar};
use serde_json::json;

use crate::support::{config, expect_kind, grpc_code, sidecar};

#[tokio::test]
async fn keys_are_stored_under_the_app_id() {
    let s = DaprStateStore::connect(config()).await.unwrap();
    let key = purista_core::testkit::unique("app-id");
    s.set(&key, &json!({"a": 1})).await.unwrap();
    assert!(sidecar().stored_keys("statestore").contains(&format!("store-tests||{key}")));
    s.remove_state(&key).await.unwrap();
}

#[tokio::test]
async fn separator_keys_are_refused_before_any_call() {
    // Refused by the adapter itself: no gRPC status behind the error.
    let s = DaprStateStore::connect(config()).await.unwrap();
    for result in [
        s.set("a||b", &1).await.map(drop),
        s.get_state(&["ok", "a||b"]).await.map(drop),
        s.remove_state("x||").await,
        s.put("||", Json::from(json!(1)), PutOptions::create()).await.map(drop),
        s.transaction(vec![Op::put("fine", Json::from(json!(1))), Op::remove("a||b")]).await,
    ] {
        let err = expect_kind(result, ErrorKind::InvalidKey);
        assert_eq!(grpc_code(&err), None, "refused locally: {err:?}");
    }
    assert_eq!(s.get::<i32>("fine").await.unwrap(), None, "nothing of the transaction applied");
}

#[tokio::test]
async fn list_and_watch_are_unsupported() {
    let s = DaprStateStore::connect(config()).await.unwrap();
    let caps = s.capabilities();
    assert!(caps.etag && caps.create_only && caps.transactions && !caps.list && !caps.watch);
    assert_eq!(caps.ttl, Some(Duration::from_secs(1)));
    expect_kind(s.list_keys("").await, ErrorKind::Unsupported);
    expect_kind(s.watch("").await.map(drop), ErrorKind::Unsupported);
}

#[tokio::test]
async fn unknown_component_is_an_invalid_argument() {
    let s = DaprStateStore::connect(config().store_name("no-such-store")).await.unwrap();
    let err = expect_kind(s.get::<i32>("k").await, ErrorKind::InvalidArgument);
    assert!(err.message().contains("no-such-store is not found"), "{err}");
}

#[tokio::test]
async fn transactions_unsupported_by_the_component() {
    let sidecar = Sidecar::builder().transactions(false).start().await.unwrap();
    let s = DaprStateStore::connect(DaprConfig::default().endpoint(sidecar.endpoint())).await.unwrap();
    let err =
        expect_kind(s.transaction(vec![Op::put("a", Json::from(json!(1)))]).await, ErrorKind::Unsupported);
    assert_eq!(grpc_code(&err), Some(tonic::Code::Unimplemented));
}

#[tokio::test]
async fn transaction_conflict_names_the_key() {
    let s = DaprStateStore::connect(config()).await.unwrap();
    let (a, b) = (purista_core::testkit::unique("tx-a"), purista_core::testkit::unique("tx-b"));
    s.set(&a, &1).await.unwrap();
    s.set(&b, &1).await.unwrap();
    let ta = s.get_entry(&a).await.unwrap().unwrap().etag;
    let tb = s.get_entry(&b).await.unwrap().unwrap().etag;
    // Two conditions; the second one is stale (its value moved on).
    s.set(&b, &2).await.unwrap();
    let ops = vec![Op::put_with(&a, Json::from(json!(3)), PutOptions::update(ta)), Op::remove_if(&b, tb)];
    let err = expect_kind(s.transaction(ops).await, ErrorKind::Conflict);
    assert_eq!(err.key(), Some(b.as_str()));
    assert_eq!(grpc_code(&err), Some(tonic::Code::Internal), "Dapr answers Internal: {err:?}");
    assert_eq!(s.get::<i32>(&a).await.unwrap(), Some(1));
}

#[tokio::test]
async fn first_write_concurrency_by_default() {
    let s = DaprStateStore::connect(config().concurrency(Concurrency::FirstWrite)).await.unwrap();
    let key = purista_core::testkit::unique("fw-default");
    s.set(&key, &1).await.expect("first write");
    let err = expect_kind(s.set(&key, &2).await, ErrorKind::Conflict);
    assert_eq!(err.key(), Some(key.as_str()));
    assert_eq!(s.get::<i32>(&key).await.unwrap(), Some(1));
}

#[tokio::test]
async fn ttl_off_for_components_without_it() {
    let s = DaprStateStore::connect(config().ttl(false)).await.unwrap();
    assert_eq!(s.capabilities().ttl, None);
    expect_kind(s.set_with_ttl("k", &1, Duration::from_secs(5)).await, ErrorKind::Unsupported);
}
