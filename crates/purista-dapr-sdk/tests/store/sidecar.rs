//! The sidecar around the adapter's calls: its API token, starting late,
//! going away, answering slowly; the errors say which key they are about.

use std::time::{Duration, Instant};

use purista_core::{ErrorKind, Op, StateStore};
use purista_dapr_sdk::{DaprConfig, DaprStateStore, emulator::Sidecar};

use crate::support::{config, expect_kind, free_port, grpc_code};

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
