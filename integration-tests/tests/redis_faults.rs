//! Faults: a server that is not there, goes away, freezes, or restarts while
//! writes are in flight. Every failure is bounded in time, names the address
//! and never the password, and the store recovers by itself.

mod support_redis;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use integration_tests::fixtures::{Kind, Options, Server};
use purista_core::{ErrorKind, StateStore, StateStoreExt, testkit::unique};
use purista_redis_state_store::RedisStateStore;
use purista_redis_state_store::fred::interfaces::ConfigInterface;

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_at_connect_is_unavailable_with_address_and_no_password() {
    let port = closed_port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    let started = Instant::now();
    let err = RedisStateStore::builder(&url)
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .expect_err("nothing listens there");
    assert!(started.elapsed() < Duration::from_secs(5), "failed fast: {:?}", started.elapsed());
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let text = format!("{err} {err:?}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "names the address: {text}");
    assert!(!text.contains("hunter2"), "never the password: {text}");
    assert!(std::error::Error::source(&err).is_some(), "keeps the fred cause");
    let bad = RedisStateStore::connect("redis://:hunter2@127.0.0.1:notaport").await.unwrap_err();
    assert!(!format!("{bad} {bad:?}").contains("hunter2"), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_unavailable_without_the_password() {
    let Some(server) = Server::start_dedicated(Kind::Redis, Options::default()).await else { return };
    let admin = RedisStateStore::connect(server.url()).await.expect("connect without password");
    let _: () = admin.pool().config_set("requirepass", "right-secret").await.expect("CONFIG SET requirepass");
    let url = server.url().replace("redis://", "redis://:wrong-secret@");
    let err =
        RedisStateStore::builder(url).connect_timeout(Duration::from_secs(2)).connect().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    assert!(!format!("{err} {err:?}").contains("wrong-secret"), "{err:?}");
    let good = server.url().replace("redis://", "redis://:right-secret@");
    let store = RedisStateStore::connect(&good).await.expect("right password");
    store.set(&unique("auth"), &1).await.expect("authenticated write");
    assert!(!format!("{store:?}").contains("right-secret"), "Debug hides the password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_gone_or_frozen_fails_within_the_command_timeout_then_recovers() {
    let Some(mut server) = Server::start_dedicated(Kind::Redis, Options::default()).await else { return };
    let store = RedisStateStore::builder(server.url())
        .command_timeout(Duration::from_secs(1))
        .connect()
        .await
        .expect("connect");
    let key = unique("fault");
    store.set(&key, &1).await.unwrap();

    server.stop().await.expect("stop");
    for _ in 0..3 {
        let started = Instant::now();
        let err = store.set(&key, &2).await.expect_err("server is down");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(4), "bounded: {took:?}");
        assert!(matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout), "{err:?}");
        assert!(err.to_string().contains(server.url().trim_start_matches("redis://")), "{err}");
    }
    server.start().await.expect("start");
    let recovered = eventually(|| async { store.set(&key, &3).await.is_ok() }).await;
    assert!(recovered, "store reconnects by itself");
    assert_eq!(store.get::<i32>(&key).await.unwrap(), Some(3));

    server.pause().await.expect("pause");
    let started = Instant::now();
    let err = store.get::<i32>(&key).await.expect_err("frozen server");
    assert!(started.elapsed() < Duration::from_secs(4), "bounded: {:?}", started.elapsed());
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    server.resume().await.expect("resume");
    assert!(eventually(|| async { store.get::<i32>(&key).await.is_ok() }).await, "recovers after a freeze");
    store.destroy().await.unwrap();
}

/// Writes run in a loop while the server restarts (clean stop, then a kill):
/// every acknowledged write is there afterwards, and the store goes on by
/// itself once the server is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_during_writes_loses_no_acknowledged_write() {
    let Some(mut server) = Server::start_dedicated(Kind::Redis, Options { persistence: true }).await else {
        return;
    };
    let store: Arc<dyn StateStore> = Arc::new(
        RedisStateStore::builder(server.url())
            .command_timeout(Duration::from_millis(500))
            .connect()
            .await
            .expect("connect"),
    );
    let prefix = unique("restart");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut writers = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        let prefix = prefix.clone();
        let stop_rx = stop_rx.clone();
        writers.push(tokio::spawn(async move {
            let (mut acked, mut failed) = (Vec::new(), 0u32);
            let mut i = 0u64;
            while !*stop_rx.borrow() {
                let key = format!("{prefix}:{w}:{i}");
                match store.set(&key, &i).await {
                    Ok(()) => acked.push((key, i)),
                    Err(e) => {
                        assert!(matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Timeout), "{e:?}");
                        failed += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                i += 1;
            }
            (acked, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart().await.expect("clean restart");
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill().await.expect("kill");
    server.start().await.expect("start after kill");
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop_tx.send(true).unwrap();
    let mut all = Vec::new();
    let mut failures = 0;
    for w in writers {
        let (acked, failed) = w.await.unwrap();
        all.extend(acked);
        failures += failed;
    }
    assert!(eventually(|| async { store.set(&format!("{prefix}:after"), &1).await.is_ok() }).await);
    let names: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
    let mut missing = 0;
    for chunk in names.chunks(500) {
        let map = store.get_state(chunk).await.unwrap();
        for (k, v) in chunk.iter().zip(chunk.iter().map(|k| &map[*k])) {
            if v.is_none() {
                missing += 1;
                eprintln!("lost acknowledged write {k}");
            }
        }
    }
    eprintln!("{} acknowledged writes, {failures} failed during the restarts, {missing} lost", all.len());
    assert!(all.len() > 100, "writes went through before and after: {}", all.len());
    assert_eq!(missing, 0, "no acknowledged write lost");
    // Values are the ones acknowledged.
    for (k, i) in all.iter().step_by(97) {
        assert_eq!(store.get::<u64>(k).await.unwrap(), Some(*i));
    }
}

async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
