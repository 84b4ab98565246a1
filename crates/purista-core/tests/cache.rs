//! The near cache on the memory store: its metrics, `max_age`, when it is
//! off, and a change feed that falls behind (the cache is emptied before any
//! further hit).

use std::{sync::Arc, time::Duration};

use purista_core::{
    CacheOptions, CachedStore, DefaultStateStore, ErrorKind, StateStore, StateStoreExt, StoreConfig,
};

async fn cached(inner: &DefaultStateStore, options: CacheOptions) -> Arc<CachedStore> {
    CachedStore::new(Arc::new(inner.clone()), options).await.expect("a near cache")
}

#[tokio::test]
async fn metrics_move_as_expected() {
    let store = DefaultStateStore::new();
    let s = cached(&store, CacheOptions::default()).await;
    assert_eq!(s.metrics().hits + s.metrics().misses, 0);
    s.set("k", &123).await.unwrap();
    assert_eq!(s.get::<i32>("k").await.unwrap(), Some(123));
    let m = s.metrics();
    assert_eq!((m.misses, m.hits, m.entries), (1, 0, 1), "{m:?}");
    assert_eq!(m.bytes, ("k".len() + "123".len()) as u64, "key and JSON bytes");
    assert_eq!(s.get::<i32>("k").await.unwrap(), Some(123));
    assert_eq!(s.get_state(&["k"]).await.unwrap()["k"], Some(purista_core::Json::encode(&123).unwrap()));
    let m = s.metrics();
    assert_eq!((m.misses, m.hits), (1, 2), "two hits: get and get_state");
    let invalidated = m.invalidations;
    s.set("k", &4).await.unwrap();
    let m = s.metrics();
    // The own write, and possibly already its event from the feed.
    assert!(m.invalidations > invalidated, "{m:?}");
    assert_eq!((m.entries, m.bytes), (0, 0), "dropped by the write: {m:?}");
    // A missing answer is cached too, with its key's bytes.
    assert_eq!(s.get::<i32>("absent").await.unwrap(), None);
    assert_eq!(s.get::<i32>("absent").await.unwrap(), None);
    let m = s.metrics();
    assert_eq!((m.misses, m.hits, m.entries, m.bytes), (2, 3, 1, "absent".len() as u64), "{m:?}");
}

#[tokio::test]
async fn bounds_evict() {
    let store = DefaultStateStore::new();
    let s = cached(&store, CacheOptions::default().max_entries(8)).await;
    for i in 0..200 {
        let key = format!("key-{i}");
        store.set(&key, &i).await.unwrap();
        // Read twice: TinyLFU admits what is read more than once.
        s.get::<i32>(&key).await.unwrap();
        s.get::<i32>(&key).await.unwrap();
    }
    let m = s.metrics();
    assert!(m.entries <= 8, "max_entries holds: {m:?}");
    assert!(m.evictions > 0, "entries were evicted: {m:?}");
    let small = cached(&store, CacheOptions::default().max_bytes(64)).await;
    for i in 0..50 {
        small.get::<i32>(&format!("key-{i}")).await.unwrap();
        small.get::<i32>(&format!("key-{i}")).await.unwrap();
    }
    let m = small.metrics();
    assert!(m.bytes <= 64, "max_bytes holds: {m:?}");
}

#[tokio::test]
async fn max_age_bounds_every_entry() {
    let store = DefaultStateStore::new();
    let s = cached(&store, CacheOptions::default().max_age(Duration::from_millis(100))).await;
    store.set("k", &1).await.unwrap();
    s.get::<i32>("k").await.unwrap();
    s.get::<i32>("k").await.unwrap();
    assert_eq!((s.metrics().misses, s.metrics().hits), (1, 1));
    tokio::time::sleep(Duration::from_millis(250)).await;
    s.get::<i32>("k").await.unwrap();
    assert_eq!(s.metrics().misses, 2, "the entry aged out: {:?}", s.metrics());
}

#[tokio::test]
async fn off_when_reads_are_disabled() {
    let store = DefaultStateStore::from_config(StoreConfig::default().enable_get(false));
    let s = cached(&store, CacheOptions::default()).await;
    assert_eq!(s.capabilities().stale_reads, None, "no cache, no staleness");
    assert!(!s.serving());
    let err = s.get::<i32>("k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Disabled);
    assert_eq!(s.metrics(), Default::default());
    let bad =
        CachedStore::new(Arc::new(DefaultStateStore::new()), CacheOptions::default().max_entries(0)).await;
    assert_eq!(bad.unwrap_err().kind(), ErrorKind::InvalidArgument);
}

/// On one thread the feed task cannot run while the writer writes, so its
/// channel overflows and the event of the first write is lost. The cache
/// must then drop everything, not go on serving the value that write replaced.
#[tokio::test(flavor = "current_thread")]
async fn a_lagging_feed_empties_the_cache() {
    let store = DefaultStateStore::new();
    let s = cached(&store, CacheOptions::default()).await;
    store.set("k", &"old").await.unwrap();
    assert_eq!(s.get::<String>("k").await.unwrap().as_deref(), Some("old"));
    assert_eq!(s.get::<String>("k").await.unwrap().as_deref(), Some("old"), "a hit");
    let writer = store.clone();
    writer.set("k", &"new").await.unwrap();
    for i in 0..5_000 {
        writer.set(&format!("filler-{i}"), &i).await.unwrap();
    }
    for _ in 0..5_000 {
        if s.metrics().resets > 0 && s.serving() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(s.metrics().resets, 1, "the feed reported that it fell behind");
    assert_eq!(s.get::<String>("k").await.unwrap().as_deref(), Some("new"), "the stale value was dropped");
    assert!(s.serving(), "the feed is back");
    // And the cache follows writes again.
    assert_eq!(s.get::<String>("k").await.unwrap().as_deref(), Some("new"));
    writer.set("k", &"newer").await.unwrap();
    for _ in 0..1_000 {
        if s.get::<String>("k").await.unwrap().as_deref() == Some("newer") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("a write after the feed came back was never seen");
}

#[tokio::test]
async fn declared_staleness() {
    let store = DefaultStateStore::new();
    let s = cached(&store, CacheOptions::default().max_feed_delay(Duration::from_millis(300))).await;
    assert_eq!(s.capabilities().stale_reads, Some(Duration::from_millis(300)));
    let capped = cached(&store, CacheOptions::default().max_age(Duration::from_millis(100))).await;
    assert_eq!(capped.capabilities().stale_reads, Some(Duration::from_millis(100)), "max_age caps it");
    let outer =
        CachedStore::new(s.clone(), CacheOptions::default().max_feed_delay(Duration::from_millis(200)))
            .await
            .unwrap();
    assert_eq!(
        outer.capabilities().stale_reads,
        Some(Duration::from_millis(500)),
        "a cache of a cache adds up"
    );
    assert_eq!(store.capabilities().stale_reads, None, "the store itself reads fresh");
}

/// A hit is answered at once: through `dyn StateStore` the call is ready
/// before it is awaited (no boxed future); a miss asks the store.
#[tokio::test]
async fn a_hit_completes_at_once() {
    let store = DefaultStateStore::new();
    let s: Arc<dyn StateStore> = cached(&store, CacheOptions::default()).await;
    s.set("k", &1).await.unwrap();
    let miss = s.get_value("k");
    assert_eq!(format!("{miss:?}"), "Call::Boxed");
    assert_eq!(miss.await.unwrap(), Some(purista_core::Json::encode(&1).unwrap()));
    let hit = s.get_value("k");
    assert_eq!(format!("{hit:?}"), "Call::Ready");
    assert_eq!(hit.await.unwrap(), Some(purista_core::Json::encode(&1).unwrap()));
    // A name that is no key is never a hit: the store refuses it.
    assert_eq!(s.get_value("").await.unwrap_err().kind(), ErrorKind::InvalidKey);
}

#[tokio::test]
async fn writes_over_a_store_that_answers_at_once_stay_ready() {
    let store = DefaultStateStore::new();
    let s: Arc<dyn StateStore> = cached(&store, CacheOptions::default()).await;
    let json = |n: u32| purista_core::Json::encode(&n).unwrap();
    s.set_state("k", json(1)).await.unwrap();
    assert_eq!(s.get_value("k").await.unwrap(), Some(json(1)));
    let set = s.set_state("k", json(2));
    assert_eq!(format!("{set:?}"), "Call::Ready");
    set.await.unwrap();
    // The cached 1 was dropped with the write: read again, then a hit.
    let miss = s.get_value("k");
    assert_eq!(format!("{miss:?}"), "Call::Boxed");
    assert_eq!(miss.await.unwrap(), Some(json(2)));
    let remove = s.remove_state("k");
    assert_eq!(format!("{remove:?}"), "Call::Ready");
    remove.await.unwrap();
    assert_eq!(s.get_value("k").await.unwrap(), None);
    assert_eq!(store.get_value("k").await.unwrap(), None);
    // A refused write is ready too, and still an error.
    assert_eq!(s.set_state("", json(3)).await.unwrap_err().kind(), ErrorKind::InvalidKey);
}
