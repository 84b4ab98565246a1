//! The adapter through the emulator: what is specific to Dapr (the behaviour
//! suite runs in `integration-tests/tests/dapr.rs`):
//! token, sidecar starting late or gone, key rules, error mapping.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use purista_core::{ETag, ErrorKind, Json, Op, PutMode, PutOptions, StateStore, StateStoreExt, StoreConfig};
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

// --- Values near the gRPC message limit (daprd's --max-body-size, 4 MiB by default).

/// A JSON string value of about `bytes` bytes.
fn big_value(bytes: usize, fill: char) -> Json {
    Json::encode(&fill.to_string().repeat(bytes)).unwrap()
}

#[tokio::test]
async fn values_readable_one_by_one_are_readable_together() {
    let s = DaprStateStore::connect(config()).await.unwrap();
    let (a, b, c) = (
        purista_core::testkit::unique("big-a"),
        purista_core::testkit::unique("big-b"),
        purista_core::testkit::unique("big-c"),
    );
    // Each under the limit, any two together over it.
    s.set_state(&a, big_value(3_000_000, 'a')).await.unwrap();
    s.set_state(&b, big_value(3_000_000, 'b')).await.unwrap();
    s.set(&c, &1).await.unwrap();
    for key in [&a, &b] {
        assert_eq!(s.get_value(key).await.unwrap().unwrap().as_bytes().len(), 3_000_002);
    }
    let names = [a.as_str(), "missing", b.as_str(), c.as_str(), a.as_str()];
    let got = s.get_state(&names).await.expect("read together");
    assert_eq!(got.len(), 4);
    assert_eq!(got[&a], Some(big_value(3_000_000, 'a')));
    assert_eq!(got[&b], Some(big_value(3_000_000, 'b')));
    assert_eq!(got["missing"], None);
    assert_eq!(got[&c].as_ref().map(|j| j.as_bytes().to_vec()), Some(b"1".to_vec()));
    for key in [&a, &b, &c] {
        s.remove_state(key).await.unwrap();
    }
}

#[tokio::test]
async fn many_names_over_the_request_limit_are_asked_in_parts() {
    let sidecar = Sidecar::builder().max_body_size(2048).start().await.unwrap();
    let s = DaprStateStore::connect(DaprConfig::default().endpoint(sidecar.endpoint())).await.unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("name-{i:04}-with-some-padding")).collect();
    for key in keys.iter().step_by(7) {
        s.set(key, key).await.unwrap();
    }
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    let got = s.get_state(&names).await.expect("read in parts");
    assert_eq!(got.len(), keys.len());
    for (i, key) in keys.iter().enumerate() {
        let expected = (i % 7 == 0).then(|| Json::encode(key).unwrap());
        assert_eq!(got[key], expected, "{key}");
    }
}

#[tokio::test]
async fn a_value_over_the_client_limit_is_a_typed_error_naming_the_key() {
    let small = DaprStateStore::connect(config().max_message_size(1 << 20)).await.unwrap();
    let s = DaprStateStore::connect(config()).await.unwrap();
    let (big, fine) = (purista_core::testkit::unique("over"), purista_core::testkit::unique("under"));
    s.set_state(&big, big_value(2_000_000, 'x')).await.unwrap();
    s.set(&fine, &7).await.unwrap();
    let errors = [
        small.get_state(&[fine.as_str(), big.as_str()]).await.map(drop),
        small.get_value(&big).await.map(drop),
        small.get_entry(&big).await.map(drop),
    ];
    for result in errors {
        let err = result.expect_err("over this client's limit");
        assert_eq!(err.kind(), ErrorKind::Backend, "not the caller's value at fault: {err:?}");
        assert_eq!(err.key(), Some(big.as_str()), "{err:?}");
        assert!(err.message().contains("message size limit"), "{err}");
    }
    assert_eq!(small.get::<i32>(&fine).await.unwrap(), Some(7));
    s.remove_state(&big).await.unwrap();
    s.remove_state(&fine).await.unwrap();
}

#[tokio::test]
async fn a_value_over_the_sidecar_limit_is_an_invalid_value() {
    let s = DaprStateStore::connect(config()).await.unwrap();
    let key = purista_core::testkit::unique("too-big");
    let err = expect_kind(s.set_state(&key, big_value(5_000_000, 'x')).await, ErrorKind::InvalidValue);
    assert_eq!(err.key(), Some(key.as_str()));
    assert_eq!(grpc_code(&err), Some(tonic::Code::ResourceExhausted));
    let ops = vec![Op::put(&key, big_value(5_000_000, 'x'))];
    expect_kind(s.transaction(ops).await, ErrorKind::InvalidValue);
    assert_eq!(s.get::<String>(&key).await.unwrap(), None);
}

// --- Errors on read paths name the caller's key.

#[tokio::test]
async fn read_errors_name_the_key() {
    let sidecar = Sidecar::builder().delay(Duration::from_secs(3)).start().await.unwrap();
    let config =
        DaprConfig::default().endpoint(sidecar.endpoint()).request_timeout(Duration::from_millis(200));
    let s = DaprStateStore::connect(config).await.unwrap();
    let errors = [
        s.get_state(&["k1"]).await.map(drop),
        s.get_value("k1").await.map(drop),
        s.get_entry("k1").await.map(drop),
    ];
    for result in errors {
        let err = expect_kind(result, ErrorKind::Timeout);
        assert_eq!(err.key(), Some("k1"), "{err:?}");
    }
    let s = DaprStateStore::connect(self::config().store_name("no-such-store")).await.unwrap();
    let errors = [
        s.get_state(&["k2"]).await.map(drop),
        s.get_value("k2").await.map(drop),
        s.get_entry("k2").await.map(drop),
    ];
    for result in errors {
        let err = expect_kind(result, ErrorKind::InvalidArgument);
        assert_eq!(err.key(), Some("k2"), "{err:?}");
    }
}

// --- Handles sharing one connection.

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

// --- Several store instances (each its own connection) on one sidecar.

const INSTANCES: usize = 8;
/// Bounds every retry loop: a conflict storm never spins forever.
const MAX_CONFLICTS: u32 = 100_000;

/// A sidecar on the test's multi-threaded runtime (its handlers run in
/// parallel) and `INSTANCES` stores on it, each with its own channel. The
/// long timeout keeps every answer definite: a timeout would leave a write
/// possibly applied, which no exactly-once count can include.
async fn instances() -> (Sidecar, Vec<DaprStateStore>) {
    let sidecar = Sidecar::start().await.unwrap();
    let mut stores = Vec::with_capacity(INSTANCES);
    for _ in 0..INSTANCES {
        let config =
            DaprConfig::default().endpoint(sidecar.endpoint()).request_timeout(Duration::from_secs(60));
        stores.push(DaprStateStore::connect(config).await.unwrap());
    }
    (sidecar, stores)
}

/// Runs `work(instance index, store)` on every instance at once, after a barrier.
async fn on_every_instance<T, F, Fut>(stores: Vec<DaprStateStore>, work: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize, DaprStateStore) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(stores.len()));
    let tasks: Vec<_> = stores
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let barrier = barrier.clone();
            let work = work(i, s);
            tokio::spawn(async move {
                barrier.wait().await;
                work.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("instance task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cas_counter_across_instances_is_exact() {
    const INCREMENTS: u64 = 25;
    let (sidecar, stores) = instances().await;
    on_every_instance(stores, |_, s| async move {
        let mut conflicts = 0u32;
        for _ in 0..INCREMENTS {
            loop {
                let (n, mode) = match s.get_entry("counter").await.expect("read") {
                    Some(e) => (e.value.decode::<u64>().unwrap(), PutMode::Update(e.etag)),
                    None => (0, PutMode::Create),
                };
                match s.put("counter", Json::encode(&(n + 1)).unwrap(), PutOptions { mode, ttl: None }).await
                {
                    Ok(_) => break,
                    Err(e) if e.kind() == ErrorKind::Conflict => {
                        conflicts += 1;
                        assert!(conflicts < MAX_CONFLICTS, "no progress");
                    }
                    Err(e) => panic!("increment failed: {e:?}"),
                }
            }
        }
    })
    .await;
    let check = DaprStateStore::connect(DaprConfig::default().endpoint(sidecar.endpoint())).await.unwrap();
    assert_eq!(check.get::<u64>("counter").await.unwrap(), Some(INSTANCES as u64 * INCREMENTS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_one_create_only_write_wins() {
    const ROUNDS: usize = 20;
    let (sidecar, stores) = instances().await;
    let outcomes = on_every_instance(stores, |i, s| async move {
        let mut won = Vec::new();
        for round in 0..ROUNDS {
            let key = format!("create-{round}");
            match s.put(&key, Json::encode(&i).unwrap(), PutOptions::create()).await {
                Ok(_) => won.push(round),
                Err(e) if e.kind() == ErrorKind::Conflict => assert_eq!(e.key(), Some(key.as_str())),
                Err(e) => panic!("create failed: {e:?}"),
            }
        }
        (i, won)
    })
    .await;
    let check = DaprStateStore::connect(DaprConfig::default().endpoint(sidecar.endpoint())).await.unwrap();
    for round in 0..ROUNDS {
        let winners: Vec<usize> =
            outcomes.iter().filter(|(_, won)| won.contains(&round)).map(|(i, _)| *i).collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let stored = check.get::<usize>(&format!("create-{round}")).await.unwrap();
        assert_eq!(stored, Some(winners[0]), "round {round}: the winner's value is stored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contended_transactions_are_all_or_nothing() {
    const TRANSFERS: usize = 15;
    let (sidecar, stores) = instances().await;
    stores[0].set("a", &0i64).await.unwrap();
    stores[0].set("b", &0i64).await.unwrap();
    // Each transfer moves 1 from a to b, both under their ETags, and creates
    // its own receipt (create-only) in the same transaction: a transaction
    // applied in part would leave a receipt behind and make its retry
    // conflict for ever, or break a + b = 0.
    let done = on_every_instance(stores, |i, s| async move {
        let mut conflicts = 0u32;
        for t in 0..TRANSFERS {
            let receipt = format!("receipt-{i}-{t}");
            loop {
                let a = s.get_entry("a").await.expect("read a").expect("a exists");
                let b = s.get_entry("b").await.expect("read b").expect("b exists");
                let (va, vb) = (a.value.decode::<i64>().unwrap(), b.value.decode::<i64>().unwrap());
                let ops = vec![
                    Op::put_with("a", Json::encode(&(va - 1)).unwrap(), PutOptions::update(a.etag)),
                    Op::put_with(&receipt, Json::encode(&t).unwrap(), PutOptions::create()),
                    Op::put_with("b", Json::encode(&(vb + 1)).unwrap(), PutOptions::update(b.etag)),
                ];
                match s.transaction(ops).await {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::Conflict => {
                        assert_ne!(e.key(), Some(receipt.as_str()), "a failed transaction left its receipt");
                        conflicts += 1;
                        assert!(conflicts < MAX_CONFLICTS, "no progress");
                    }
                    Err(e) => panic!("transfer failed: {e:?}"),
                }
            }
        }
        TRANSFERS
    })
    .await;
    let total: usize = done.iter().sum();
    let check = DaprStateStore::connect(DaprConfig::default().endpoint(sidecar.endpoint())).await.unwrap();
    assert_eq!(check.get::<i64>("a").await.unwrap(), Some(-(total as i64)));
    assert_eq!(check.get::<i64>("b").await.unwrap(), Some(total as i64));
    let receipts = sidecar.stored_keys("statestore").iter().filter(|k| k.contains("||receipt-")).count();
    assert_eq!(receipts, total, "one receipt per transfer");
}
