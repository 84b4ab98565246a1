//! A server restart that loses every key, while an instance reads through
//! its near cache: once the change feed reported the interruption, no value
//! the restart lost is served from the cache, and after the feed is back the
//! cache follows writes again. Prints what the feed reported and when.

mod support_nats;

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use integration_tests::fixtures::{Kind, Options, Server};
use purista_core::{CacheOptions, CachedStore, StateStore, StateStoreExt, testkit::unique};
use purista_nats_state_store::{NatsStateStore, Storage};
use purista_redis_state_store::RedisStateStore;

/// How long the feed may take to report the restart, and the store to come back.
const PATIENCE: Duration = Duration::from_secs(30);

const KEYS: usize = 16;

/// `recovers`: whether the store works again after the restart (a NATS
/// memory bucket is lost with its keys, and the store does not create it again).
async fn lost_values_never_served<F, Fut>(label: &str, mut server: Server, recovers: bool, open: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Arc<dyn StateStore>>,
{
    let writer = open(server.url().to_owned()).await;
    let cached = CachedStore::new(open(server.url().to_owned()).await, CacheOptions::default())
        .await
        .expect("a near cache");
    let bound = cached.capabilities().stale_reads.expect("the cache is on");
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| unique(&format!("restart-{i}"))).collect());
    for key in keys.iter() {
        writer.set(key, &"before").await.expect("write before the restart");
    }
    for _ in 0..2 {
        for key in keys.iter() {
            assert_eq!(cached.get::<String>(key).await.unwrap().as_deref(), Some("before"));
        }
    }
    let warm = cached.metrics();
    assert!(warm.hits >= KEYS as u64, "every key cached before the restart: {warm:?}");

    // Readers all through the restart: once the restart is over (the old
    // server gone with its values) and the feed reported an interruption
    // since it began, no read may answer a lost value. Reads during the
    // restart are not judged: a connection may break (and be reported, and
    // the feed come back) while the old server still holds the values, seen
    // in a container's restart taking 3.5 s with two reports.
    let since = Arc::new(AtomicU64::new(u64::MAX));
    let stop = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (cached, keys, stop, violations, reads, since) =
            (cached.clone(), keys.clone(), stop.clone(), violations.clone(), reads.clone(), since.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let reported = cached.metrics().resets > since.load(Ordering::SeqCst);
                let got = cached.get::<String>(&keys[n % KEYS]).await;
                if reported && matches!(&got, Ok(Some(v)) if v == "before") {
                    violations.fetch_add(1, Ordering::SeqCst);
                }
                reads.fetch_add(1, Ordering::SeqCst);
                n += 1;
                if got.is_err() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tokio::task::yield_now().await;
            }
        })
    };

    tokio::time::sleep(Duration::from_millis(200)).await;
    let before_restart = cached.metrics().resets;
    let restarted = Instant::now();
    server.restart().await.expect("restart");
    let back = restarted.elapsed();
    since.store(before_restart, Ordering::SeqCst);
    let reported = loop {
        if cached.metrics().resets > before_restart {
            break restarted.elapsed();
        }
        if restarted.elapsed() > PATIENCE {
            let served = cached.get::<String>(&keys[0]).await;
            let store = writer.get::<String>(&keys[0]).await;
            panic!(
                "{label}: the change feed did not report the restart within {PATIENCE:?} (the cache \
                 now answers {served:?} for a key the restart lost, the store {store:?}; metrics {:?})",
                cached.metrics()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for key in keys.iter() {
        let got = cached.get::<String>(key).await;
        assert!(
            !matches!(&got, Ok(Some(v)) if v == "before"),
            "{label}: a lost value served after the report: {got:?}"
        );
    }
    if !recovers {
        // Nothing to follow any more: the cache stays off and every read asks the store.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!cached.serving(), "{label}: serving again without a change feed");
        let before = cached.metrics();
        for key in keys.iter() {
            let got = cached.get::<String>(key).await;
            assert!(!matches!(&got, Ok(Some(v)) if v == "before"), "{label}: {got:?}");
        }
        assert_eq!(cached.metrics().hits, before.hits, "{label}: no hit without a feed");
        stop.store(true, Ordering::SeqCst);
        reader.await.expect("reader");
        eprintln!(
            "[cache_restart] {label}: restart took {back:?}; feed reported the interruption {reported:?} after \
             the restart began; the store does not come back, nor does the cache; {} reset(s) before the \
             restart; metrics {:?}",
            before_restart - warm.resets,
            cached.metrics()
        );
        assert_eq!(violations.load(Ordering::SeqCst), 0, "{label}: lost values served after the report");
        return;
    }
    let serving_again = loop {
        if cached.serving() {
            break restarted.elapsed();
        }
        assert!(restarted.elapsed() < PATIENCE, "{label}: the feed never came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // The feed is back: a write by another instance reaches the cache.
    let key = &keys[0];
    let mut written = false;
    while restarted.elapsed() < PATIENCE {
        if writer.set(key, &"after").await.is_ok() {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(written, "{label}: the writer never wrote again after the restart");
    let write_done = Instant::now();
    loop {
        if let Ok(Some(v)) = cached.get::<String>(key).await
            && v == "after"
        {
            break;
        }
        assert!(
            write_done.elapsed() < PATIENCE,
            "{label}: the write after the restart never reached the cache"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seen_after = write_done.elapsed();
    assert_eq!(cached.get::<String>(key).await.unwrap().as_deref(), Some("after"), "{label}: and stays read");
    // Cached again, then invalidated by a foreign write.
    writer.set(key, &"again").await.expect("write");
    let again = Instant::now();
    while cached.get::<String>(key).await.ok().flatten().as_deref() != Some("again") {
        assert!(again.elapsed() <= bound, "{label}: a foreign write not seen within {bound:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    stop.store(true, Ordering::SeqCst);
    reader.await.expect("reader");
    let m = cached.metrics();
    eprintln!(
        "[cache_restart] {label}: restart took {back:?}; feed reported the interruption {reported:?} after \
         the restart began, cache serving again after {serving_again:?}; a write after it read in \
         {seen_after:?}; {} reads during the run, {} reset(s) before the restart; metrics {m:?}",
        reads.load(Ordering::SeqCst),
        before_restart - warm.resets
    );
    assert_eq!(violations.load(Ordering::SeqCst), 0, "{label}: lost values served after the report");
    writer.remove_state(key).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_empties_the_cache() {
    let Some(server) = Server::start_dedicated(Kind::Redis, Options::default()).await else { return };
    lost_values_never_served("redis", server, true, |url| async move {
        let store = RedisStateStore::builder(url)
            .command_timeout(Duration::from_secs(1))
            .connect()
            .await
            .expect("connect");
        Arc::new(store) as Arc<dyn StateStore>
    })
    .await;
}

// Before the NATS watch reported a lost connection (main at 2fe7eac) the
// feed said nothing after this restart and the cache kept serving lost values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_empties_the_cache() {
    let Some(server) = Server::start_dedicated(Kind::Nats, Options::default()).await else { return };
    // A memory bucket: the restart loses it with every key.
    let bucket = support_nats::bucket("cache-restart");
    lost_values_never_served("nats", server, false, |url| {
        let bucket = bucket.clone();
        async move {
            let store = NatsStateStore::builder()
                .server(url)
                .bucket(bucket)
                .storage(Storage::Memory)
                .connect()
                .await
                .expect("connect");
            Arc::new(store) as Arc<dyn StateStore>
        }
    })
    .await;
}
