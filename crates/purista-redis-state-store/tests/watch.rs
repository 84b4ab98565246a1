//! Watch against a real `redis-server` started here on a free loopback port
//! (skipped, saying why, when the binary is missing): values written by other
//! clients, values gone before the watcher could read them, transactions, and
//! a watcher surviving a server restart.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use futures_util::StreamExt;
use purista_core::{Json, Op, StateStore, StateStoreExt, WatchEvent, WatchKind, WatchStream};
use purista_redis_state_store::{
    RedisStateStore,
    fred::{
        clients::Client,
        interfaces::{ClientLike, KeysInterface},
        prelude::Config,
    },
};

struct Server {
    port: u16,
    child: Option<Child>,
}

impl Server {
    fn start() -> Option<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let mut server = Server { port, child: None };
        if !server.spawn() {
            let why = "no redis-server on PATH (apt-get install redis-server)";
            if std::env::var("PURISTA_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
                panic!("{why}, and PURISTA_TEST_REQUIRE_SERVICES=1 requires it");
            }
            eprintln!("[purista-test] SKIPPED: {why}");
            return None;
        }
        Some(server)
    }

    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn next(events: &mut WatchStream) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("event within 10 s")
        .expect("stream open")
        .expect("event, not error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reports_every_writer_with_values() {
    let Some(server) = Server::start() else { return };
    let store = RedisStateStore::connect(&server.url()).await.unwrap();
    let raw = Client::new(Config::from_url(&server.url()).unwrap(), None, None, None);
    raw.init().await.unwrap();

    let mut events = store.watch("w:").await.unwrap();
    // Another client's write: its value is read on notification.
    let _: () = raw.set("w:foreign", r#"{"by":"redis-cli"}"#, None, None, false).await.unwrap();
    let e = next(&mut events).await;
    assert_eq!(e.key, "w:foreign");
    match e.kind {
        WatchKind::Set { value, etag } => {
            assert_eq!(value.as_str(), Some(r#"{"by":"redis-cli"}"#));
            assert_eq!(etag, Some(store.get_entry("w:foreign").await.unwrap().unwrap().etag));
        }
        other => panic!("expected Set, got {other:?}"),
    }
    let _: i64 = raw.del("w:foreign").await.unwrap();
    assert_eq!(next(&mut events).await.kind, WatchKind::Removed);

    // Our own writes, even when removed at once, come with their values, in
    // order, once each (a transaction too).
    for i in 0..20 {
        store.set("w:fast", &i).await.unwrap();
        store.remove_state("w:fast").await.unwrap();
    }
    for i in 0..20 {
        let set = next(&mut events).await;
        assert!(
            matches!(&set.kind, WatchKind::Set { value, .. } if value.decode::<i32>().unwrap() == i),
            "{set:?}"
        );
        assert_eq!(next(&mut events).await.kind, WatchKind::Removed);
    }
    store
        .transaction(vec![
            Op::put("w:t", Json::encode(&1).unwrap()),
            Op::put("w:t", Json::encode(&2).unwrap()),
            Op::remove("w:t"),
        ])
        .await
        .unwrap();
    let got = vec![next(&mut events).await, next(&mut events).await, next(&mut events).await];
    assert!(got.iter().all(|e| e.key == "w:t"), "{got:?}");
    let kinds: Vec<WatchKind> = got.into_iter().map(|e| e.kind).collect();
    assert!(matches!(&kinds[0], WatchKind::Set { value, .. } if value.as_str() == Some("1")), "{kinds:?}");
    assert!(matches!(&kinds[1], WatchKind::Set { value, .. } if value.as_str() == Some("2")), "{kinds:?}");
    assert_eq!(kinds[2], WatchKind::Removed);
    // Nothing else queued (no duplicate from the keyspace notification).
    let extra = tokio::time::timeout(Duration::from_millis(300), events.next()).await;
    assert!(extra.is_err(), "no duplicate events: {extra:?}");
    raw.quit().await.unwrap();
    store.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_a_server_restart() {
    let Some(mut server) = Server::start() else { return };
    let store = RedisStateStore::builder(server.url())
        .command_timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap();
    let mut events = store.watch("r:").await.unwrap();
    store.set("r:before", &1).await.unwrap();
    assert_eq!(next(&mut events).await.key, "r:before");
    server.stop();
    assert!(server.spawn(), "restart");
    // The store reconnects, the watcher re-subscribes (and switches
    // notifications on again on the fresh server) by itself, and says that
    // it may have missed changes meanwhile.
    let (mut seen, mut gap) = (None, None);
    for i in 0..100 {
        if store.set("r:after", &i).await.is_ok() {
            match tokio::time::timeout(Duration::from_millis(300), events.next()).await {
                Ok(Some(Ok(e))) => {
                    seen = Some(e);
                    break;
                }
                Ok(Some(Err(e))) => gap = Some(e),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = seen.expect("events after the restart");
    assert_eq!(e.key, "r:after");
    let gap = gap.expect("the reconnection is reported before later events");
    assert_eq!(gap.kind(), purista_core::ErrorKind::Unavailable, "{gap}");
    assert!(gap.to_string().contains("re-established"), "{gap}");
}
