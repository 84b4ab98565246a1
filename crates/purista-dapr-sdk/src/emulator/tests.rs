//! The emulator's faults (stall, kill, restart) through the adapter.

use std::time::{Duration, Instant};

use purista_core::ErrorKind;

use super::Sidecar;
use crate::{DaprConfig, DaprStateStore};

/// Bound on waits for an event that follows a fault.
const WAIT: Duration = Duration::from_secs(10);

async fn store(sidecar: &Sidecar) -> DaprStateStore {
    let config = DaprConfig::default()
        .endpoint(sidecar.endpoint())
        .request_timeout(Duration::from_millis(300))
        .wait_for_sidecar(Duration::from_secs(5));
    DaprStateStore::connect(config).await.expect("connect to the emulator")
}

/// Waits up to [`WAIT`] for `ready`, polling.
async fn eventually(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ready().await {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_held_by_a_stall_times_out_and_still_runs_on_resume() {
    let sidecar = Sidecar::start().await.unwrap();
    let store = store(&sidecar).await;
    sidecar.stall();
    let err = store.set("k", &1).await.expect_err("no answer while stalled");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert!(sidecar.stored_keys("statestore").is_empty(), "held, not applied yet");
    sidecar.resume();
    eventually("the held write runs", async || sidecar.stored_keys("statestore") == ["emulator||k"]).await;
    assert_eq!(store.get::<i64>("k").await.unwrap(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sidecar_restarts_on_the_same_address_with_its_data() {
    let mut sidecar = Sidecar::start().await.unwrap();
    let (addr, store) = (sidecar.addr(), store(&sidecar).await);
    store.set("k", &1).await.unwrap();
    sidecar.kill().await;
    let err = store.get::<i64>("k").await.expect_err("the sidecar is gone");
    assert!(matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout), "{err:?}");
    // Nothing listens, but the port is held: no listener bound to port 0
    // by another test meanwhile can take it.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "refused while down");
    sidecar.restart().await.expect("restart on the held port");
    assert_eq!(sidecar.addr(), addr);
    // The store's channel reconnects on its own.
    eventually("the store reconnects", async || store.get::<i64>("k").await.is_ok()).await;
    assert_eq!(store.get::<i64>("k").await.unwrap(), Some(1));
    store.set("k", &2).await.unwrap();
    assert_eq!(store.get::<i64>("k").await.unwrap(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_finds_its_port_taken_fails_at_once_naming_it() {
    let mut sidecar = Sidecar::start().await.unwrap();
    let addr = sidecar.addr();
    sidecar.kill().await;
    // Only a listener bound to this very address can take the held port.
    let taken = tokio::net::TcpListener::bind(addr).await.expect("take the port");
    let err = tokio::time::timeout(WAIT, sidecar.restart()).await.expect("no hang").expect_err("port taken");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "names the address: {err}");
    drop(taken);
    sidecar.restart().await.expect("the port is free again");
    let store = store(&sidecar).await;
    store.set("k", &1).await.unwrap();
    assert_eq!(sidecar.stored_keys("statestore"), ["emulator||k"]);
}
