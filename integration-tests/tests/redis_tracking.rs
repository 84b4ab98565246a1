//! The near cache's feed on Redis, `CLIENT TRACKING`, on a server that
//! refuses `CONFIG` (as managed servers often do): `watch` cannot switch
//! keyspace notifications on and says how, while `invalidations` and a near
//! cache over it work, hearing other clients' writes, removes, increments
//! and expiries under the prefix only, with no pattern subscription. A
//! server without `CLIENT` gets keyspace notifications instead.
//! (Lost connections: `redis_watch_loss.rs` runs each case on this feed too;
//! every suite run over Redis follows it in `invalidations_converge` and the
//! cached suites.)

mod support_redis;

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use integration_tests::fixtures::{Process, RedisServer};
use purista_core::{CacheOptions, CachedStore, ErrorKind, StateStore, StateStoreExt, WatchKind};
use purista_redis_state_store::{
    RedisStateStore,
    fred::{clients::Client, interfaces::KeysInterface, types::Expiration},
};
use support_redis::watch::{command, raw};

/// The store under test and a raw client beside it, on `server`.
async fn clients(server: &Process) -> (RedisStateStore, Client) {
    (RedisStateStore::connect(&server.url()).await.unwrap(), raw(server).await)
}

/// `k` set to 1 by the raw client, then a near cache over `store`.
/// (Written first: its own invalidation would drop the cache's first read.)
async fn cache_with_k(store: &RedisStateStore, raw: &Client) -> Arc<CachedStore> {
    let _: () = raw.set("k", "1", None, None, false).await.unwrap();
    CachedStore::new(Arc::new(store.clone()), CacheOptions::default()).await.unwrap()
}

/// Another client sets `k` (cached as 1) to 2: read through `cached`
/// within its declared bound. How long that took.
async fn foreign_write_read(cached: &CachedStore, raw: &Client) -> Duration {
    let written = Instant::now();
    let _: () = raw.set("k", "2", None, None, false).await.unwrap();
    let bound = cached.capabilities().stale_reads.expect("a declared bound");
    while cached.get::<i64>("k").await.unwrap() != Some(2) {
        assert!(written.elapsed() < bound, "the foreign write is read within {bound:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    written.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_needs_no_config_command() {
    let Some(server) = RedisServer::new("redis-tracking").without_command("CONFIG").start().await else {
        return;
    };
    let (store, raw) = clients(&server).await;

    let refused = store.watch("t:").await.err().expect("watch needs keyspace notifications");
    assert_eq!(refused.kind(), ErrorKind::Unsupported, "{refused}");
    assert!(refused.to_string().contains("notify-keyspace-events"), "says how: {refused}");

    let mut names = store.invalidations("t:").await.expect("invalidations need no CONFIG");
    let _: () = raw.set("t:a", "1", None, None, false).await.unwrap();
    let _: () = raw.set("outside:x", "1", None, None, false).await.unwrap();
    let _: i64 = raw.incr("t:n").await.unwrap();
    let _: i64 = raw.del("t:a").await.unwrap();
    let _: () = raw.set("t:e", "1", Some(Expiration::PX(200)), None, false).await.unwrap();
    let want: HashSet<&str> = ["t:a", "t:n", "t:e"].into();
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !want.iter().all(|k| seen.contains(*k)) {
        assert!(Instant::now() < deadline, "named within 10 s: saw {seen:?}");
        // Redis expires a key when it is touched, or by its own sampling.
        let _: Option<String> = raw.get("t:e").await.unwrap();
        let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(300), names.next()).await else {
            continue;
        };
        let event = item.expect("no error");
        assert_eq!(event.kind, WatchKind::Changed, "names only: {event:?}");
        assert!(want.contains(event.key.as_str()), "only keys under the prefix: {event:?}");
        seen.insert(event.key);
    }
    // The feed subscribes to no pattern (`watch` would, for each node).
    let patterns = command(&raw, "PUBSUB", vec!["NUMPAT"]).await;
    assert_eq!(patterns.as_i64(), Some(0), "no pattern subscription: {patterns:?}");

    // A near cache over it hears another client's write.
    let cached = cache_with_k(&store, &raw).await;
    assert_eq!(cached.get::<i64>("k").await.unwrap(), Some(1));
    assert_eq!(cached.get::<i64>("k").await.unwrap(), Some(1));
    assert!(cached.metrics().hits >= 1, "served from the cache: {:?}", cached.metrics());
    let delay = foreign_write_read(&cached, &raw).await;
    eprintln!("[redis_tracking] a foreign write was read {delay:?} after it");
    cached.destroy().await.unwrap();
    store.destroy().await.unwrap();
}

/// A server that refuses `CLIENT TRACKING` (here: no `CLIENT` command, as
/// before Redis 6 or under an ACL without it): the near cache follows
/// keyspace notifications instead and still hears another client's write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tracking_the_cache_follows_keyspace_notifications() {
    let Some(server) = RedisServer::new("redis-no-client").without_command("CLIENT").start().await else {
        return;
    };
    let (store, raw) = clients(&server).await;
    let cached = cache_with_k(&store, &raw).await;
    assert!(cached.serving(), "the cache is on");
    let patterns = command(&raw, "PUBSUB", vec!["NUMPAT"]).await;
    assert!(patterns.as_i64() > Some(0), "the fallback subscribes to keyspace notifications: {patterns:?}");
    assert_eq!(cached.get::<i64>("k").await.unwrap(), Some(1));
    foreign_write_read(&cached, &raw).await;
    cached.destroy().await.unwrap();
    store.destroy().await.unwrap();
}

/// A follower that does not read while 5,000 keys change loses nothing
/// unless it says so ("fell behind"), and names a later write either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_named_or_reported_and_later_writes_are_named() {
    let Some(server) = RedisServer::new("redis-tracking-load").start().await else { return };
    let (store, raw) = clients(&server).await;
    let mut names = store.invalidations("lag:").await.unwrap();
    let keys: Vec<String> = (0..5000).map(|i| format!("lag:{i}")).collect();
    futures_util::future::join_all(keys.iter().map(|k| {
        let raw = &raw;
        async move {
            let _: () = raw.set(k.as_str(), "1", None, None, false).await.unwrap();
        }
    }))
    .await;
    let (mut seen, mut errors) = (HashSet::new(), Vec::new());
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_secs(2), names.next()).await {
        match item {
            Ok(event) => drop(seen.insert(event.key)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    assert!(errors.iter().all(|e| e.contains("fell behind")), "{errors:?}");
    assert!(
        seen.len() == keys.len() || !errors.is_empty(),
        "{} of {} named, no error",
        seen.len(),
        keys.len()
    );
    let _: () = raw.set("lag:final", "1", None, None, false).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), names.next()).await {
            Ok(Some(Ok(event))) if event.key == "lag:final" => break,
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => assert!(e.to_string().contains("fell behind"), "{e}"),
            Ok(None) => panic!("stream ended"),
            Err(_) => panic!("the later write was not named within 10 s"),
        }
    }
    eprintln!("[redis_tracking] backlog of {}: {} named, {} error(s)", keys.len(), seen.len(), errors.len());
    store.destroy().await.unwrap();
}
