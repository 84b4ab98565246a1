//! Watch against a real `redis-server` of each test's own, started by the
//! fixtures' launcher (skipped, saying why, when the binary is missing):
//! values written by other clients, values gone before the watcher could
//! read them, transactions, a watcher surviving a server restart, expiry and
//! destroy. (`redis_watch_load.rs` has bursts, lag and ordering; the generic
//! watch cases run in the behaviour suite, `redis.rs`.)

mod support_redis;

use std::{collections::HashMap, time::Duration};

use futures_util::StreamExt;
use purista_core::{Json, Op, StateStore, StateStoreExt, StoreConfig, WatchKind};
use purista_redis_state_store::{
    RedisStateStore,
    fred::{
        clients::Client,
        interfaces::{ClientLike, KeysInterface},
        prelude::Config,
    },
};
use support_redis::watch::{command, converge, next, raw, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reports_every_writer_with_values() {
    let Some(server) = start().await else { return };
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
            // The ETag lives in a version key the notification does not carry.
            assert_eq!(etag, None, "read the ETag with get_entry");
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
    let Some(mut server) = start().await else { return };
    let store = RedisStateStore::builder(server.url())
        .command_timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap();
    let mut events = store.watch("r:").await.unwrap();
    store.set("r:before", &1).await.unwrap();
    assert_eq!(next(&mut events).await.key, "r:before");
    server.kill();
    server.start().await.expect("restart");
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

/// Defect: a write over a key that had expired but was not yet purged
/// (Redis expires it when the write touches it) was reported as `Set`, then
/// `Expired`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_over_an_expired_key_ends_with_its_set() {
    let Some(server) = start().await else { return };
    let store = RedisStateStore::connect(&server.url()).await.unwrap();
    let raw = raw(&server).await;
    // Keys expire only when touched: the write below is what expires it.
    command(&raw, "DEBUG", vec!["SET-ACTIVE-EXPIRE", "0"]).await;
    let mut events = store.watch("x:").await.unwrap();
    let mut want = HashMap::new();
    for i in 0..10 {
        let key = format!("x:{i}");
        store.set_with_ttl(&key, &1, Duration::from_millis(20)).await.unwrap();
        want.insert(key, Some("2".to_owned()));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for key in want.keys() {
        store.set(key, &2).await.unwrap();
    }
    converge(&mut events, &want).await;
    command(&raw, "DEBUG", vec!["SET-ACTIVE-EXPIRE", "1"]).await;
    raw.quit().await.unwrap();
    store.destroy().await.unwrap();
}

/// Connections holding a pattern subscription (`psub` > 0 in `CLIENT LIST`).
async fn watcher_connections(raw: &Client) -> usize {
    let list = command(raw, "CLIENT", vec!["LIST"]).await.as_string().unwrap_or_default();
    list.lines().filter(|l| l.split(' ').any(|f| f.starts_with("psub=") && f != "psub=0")).count()
}

async fn until(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if ok().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} within 10 s");
}

/// Defect: `destroy` left the watch tasks and their connections running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_stops_watchers_and_their_connections() {
    let Some(server) = start().await else { return };
    let raw = raw(&server).await;
    let store = RedisStateStore::connect(&server.url()).await.unwrap();
    let mut events = store.watch("d:").await.unwrap();
    assert_eq!(watcher_connections(&raw).await, 1);
    store.destroy().await.unwrap();
    // The stream, still held, ends; the subscriber connection closes.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = events.next().await {
            assert!(e.is_err(), "no events after destroy: {e:?}");
        }
    })
    .await;
    assert!(ended.is_ok(), "the watch stream ends after destroy");
    until("the watcher's connection closes", async || watcher_connections(&raw).await == 0).await;
    raw.quit().await.unwrap();
}

/// Stores built on one shared client: destroying one stops its watchers
/// only, and leaves the client open for the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_leaves_other_stores_on_a_shared_client() {
    let Some(server) = start().await else { return };
    let raw = raw(&server).await;
    let client = Client::new(Config::from_url(&server.url()).unwrap(), None, None, None);
    client.init().await.unwrap();
    let a = RedisStateStore::from_client(client.clone(), StoreConfig::default()).await.unwrap();
    let b = RedisStateStore::from_client(client.clone(), StoreConfig::default()).await.unwrap();
    let mut on_a = a.watch("s:").await.unwrap();
    let mut on_b = b.watch("s:").await.unwrap();
    a.destroy().await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), async { while on_a.next().await.is_some() {} });
    assert!(ended.await.is_ok(), "a's watcher ends");
    until("a's watcher connection closes", async || watcher_connections(&raw).await == 1).await;
    b.set("s:k", &7).await.expect("the shared client stays open");
    let e = next(&mut on_b).await;
    assert_eq!(e.key, "s:k");
    b.destroy().await.unwrap();
    assert!(client.is_connected(), "a caller's client stays open");
    client.quit().await.unwrap();
    raw.quit().await.unwrap();
}
