//! The adapter through the emulator: what is specific to Dapr (the behaviour
//! suite runs in `integration-tests/tests/dapr.rs`):
//! token, sidecar starting late or gone, key rules, error mapping.

use std::{
    net::SocketAddr,
    sync::OnceLock,
    time::{Duration, Instant},
};

use purista_core::{
    ETag, ErrorKind, Json, Op, PutOptions, StateStore, StateStoreExt, StoreConfig, backend::Backend,
};
use purista_dapr_sdk::{
    Concurrency, DaprConfig, DaprEventBridge, DaprEventBridgeConfig, DaprStateStore, GrpcError,
    emulator::Sidecar,
};
use serde_json::json;

const TOKEN: &str = "test-token-3f9a";

/// One emulator for the whole file, on its own thread: each test runs its own runtime.
fn sidecar() -> &'static Sidecar {
    static SIDECAR: OnceLock<Sidecar> = OnceLock::new();
    SIDECAR.get_or_init(|| {
        Sidecar::builder()
            .app_id("store-tests")
            .api_token(TOKEN)
            .start_on_thread()
            .expect("start the emulator")
    })
}

fn config() -> DaprConfig {
    DaprConfig::default().endpoint(sidecar().endpoint()).api_token(TOKEN)
}

#[track_caller]
fn expect_kind<T: std::fmt::Debug>(result: purista_core::Result<T>, kind: ErrorKind) -> purista_core::Error {
    match result {
        Err(e) if e.kind() == kind => e,
        other => panic!("expected {kind:?}, got {other:?}"),
    }
}

fn grpc_code(err: &purista_core::Error) -> Option<tonic::Code> {
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        if let Some(g) = s.downcast_ref::<GrpcError>() {
            return Some(g.code());
        }
        source = s.source();
    }
    None
}

#[tokio::test]
async fn keys_are_stored_under_the_app_id() {
    let s = DaprStateStore::connect(config()).await.unwrap();
    let key = purista_core::testkit::unique("app-id");
    s.set(&key, &json!({"a": 1})).await.unwrap();
    assert!(sidecar().stored_keys("statestore").contains(&format!("store-tests||{key}")));
    s.remove_state(&key).await.unwrap();
}

#[tokio::test]
async fn missing_token_is_unavailable() {
    let s = DaprStateStore::connect(config().no_api_token()).await.expect("connecting needs no token");
    let err = expect_kind(s.get::<i32>("k").await, ErrorKind::Unavailable);
    assert_eq!(grpc_code(&err), Some(tonic::Code::Unauthenticated));
    assert!(err.to_string().contains("API token"), "{err}");
}

#[tokio::test]
async fn wrong_token_is_unavailable_and_never_shown() {
    let secret = "wrong-token-do-not-print-7731";
    let s = DaprStateStore::connect(config().api_token(secret)).await.unwrap();
    let err = expect_kind(s.set("k", &1).await, ErrorKind::Unavailable);
    assert_eq!(grpc_code(&err), Some(tonic::Code::Unauthenticated));
    for shown in
        [err.to_string(), format!("{err:?}"), format!("{s:?}"), format!("{:?}", config().api_token(secret))]
    {
        assert!(!shown.contains(secret), "token leaked: {shown}");
    }
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

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn waits_for_a_sidecar_starting_late() {
    let addr = free_port();
    let config =
        DaprConfig::default().endpoint(format!("http://{addr}")).wait_for_sidecar(Duration::from_secs(10));
    let started = Instant::now();
    let connecting = tokio::spawn(DaprStateStore::connect(config));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!connecting.is_finished(), "still waiting for the sidecar");
    let sidecar = Sidecar::builder().bind(addr).start().await.expect("bind the chosen port");
    let s = connecting.await.unwrap().expect("connected once the sidecar is up");
    assert!(started.elapsed() >= Duration::from_millis(800));
    s.set("late", &true).await.unwrap();
    assert_eq!(sidecar.stored_keys("statestore"), ["emulator||late"]);
}

#[tokio::test]
async fn gives_up_waiting_at_the_deadline() {
    let addr = free_port();
    let config =
        DaprConfig::default().endpoint(format!("http://{addr}")).wait_for_sidecar(Duration::from_millis(700));
    let started = Instant::now();
    let err = expect_kind(DaprStateStore::connect(config).await, ErrorKind::Unavailable);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(700) && waited < Duration::from_secs(3), "{waited:?}");
    assert!(err.message().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn sidecar_gone_fails_within_the_timeout() {
    let sidecar = Sidecar::start().await.unwrap();
    let timeout = Duration::from_secs(2);
    let config = DaprConfig::default().endpoint(sidecar.endpoint()).request_timeout(timeout);
    let s = DaprStateStore::connect(config).await.unwrap();
    s.set("k", &1).await.unwrap();
    drop(sidecar);
    for _ in 0..3 {
        let started = Instant::now();
        let err = s.get::<i32>("k").await.expect_err("the sidecar is gone");
        assert!(started.elapsed() < timeout, "answered within the timeout");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    }
}

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
    let scoped = bridge.state_store_with(StoreConfig::default().enable_set(false));
    expect_kind(scoped.set("x", &1).await, ErrorKind::Disabled);
    assert!(!format!("{bridge:?}").contains(TOKEN));
    // An invalid ETag value is a conflict, not a usage error.
    let err = expect_kind(
        bridge.state_store().put("hits", Json::from(json!(0)), PutOptions::update(ETag::new("nope"))).await,
        ErrorKind::Conflict,
    );
    assert_eq!(err.key(), Some("hits"));
    assert_eq!(bridge.state_store().store_name(), "DaprStateStore");
}

#[tokio::test]
async fn slow_sidecar_times_out() {
    let sidecar = Sidecar::builder().delay(Duration::from_secs(3)).start().await.unwrap();
    let timeout = Duration::from_millis(300);
    let config = DaprConfig::default().endpoint(sidecar.endpoint()).request_timeout(timeout);
    let s = DaprStateStore::connect(config).await.unwrap();
    let started = Instant::now();
    let err = expect_kind(s.set("slow", &1).await, ErrorKind::Timeout);
    assert!(started.elapsed() < Duration::from_secs(2), "gave up at the timeout: {:?}", started.elapsed());
    assert_eq!(err.key(), Some("slow"));
    let started = Instant::now();
    expect_kind(s.transaction(vec![Op::remove("slow")]).await, ErrorKind::Timeout);
    expect_kind(s.get_state(&["a", "b"]).await.map(drop), ErrorKind::Timeout);
    assert!(started.elapsed() < Duration::from_secs(3));
}
