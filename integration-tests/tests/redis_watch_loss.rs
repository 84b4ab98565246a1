//! A Redis watch says at once that its connection is lost (server killed),
//! before the server is back, once per outage; after the restart events flow
//! again on the same stream; a healthy idle watch reports nothing; a frozen
//! server (SIGSTOP) loses no event. Each case runs on both feeds: `watch`
//! (keyspace notifications) and `invalidations` (`CLIENT TRACKING`, the
//! near cache's).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use integration_tests::fixtures::{Kind, Options, Server};
use purista_core::{Error, ErrorKind, StateStore, WatchEvent, WatchStream};
use purista_redis_state_store::RedisStateStore;

/// The bound on reporting a loss (generous: it takes milliseconds).
const LOSS_REPORTED: Duration = Duration::from_secs(5);

/// The next item within `limit`; `None` if there is none by then.
async fn within(events: &mut WatchStream, limit: Duration) -> Option<Result<WatchEvent, Error>> {
    let item = tokio::time::timeout(limit, events.next()).await.ok()?;
    Some(item.expect("the watch stream stays open"))
}

/// Which of the store's two feeds a case follows.
#[derive(Clone, Copy)]
enum Via {
    Watch,
    Invalidations,
}

impl Via {
    async fn open(self, store: &RedisStateStore, prefix: &str) -> WatchStream {
        match self {
            Via::Watch => store.watch(prefix).await.unwrap(),
            Via::Invalidations => store.invalidations(prefix).await.unwrap(),
        }
    }
}

async fn store(server: &Server) -> RedisStateStore {
    RedisStateStore::builder(server.url()).command_timeout(Duration::from_secs(1)).connect().await.unwrap()
}

async fn a_killed_server_is_reported_at_once_and_the_watch_resumes(via: Via) {
    let Some(mut server) = Server::start_dedicated(Kind::Redis, Options::default()).await else { return };
    let store = store(&server).await;
    let mut events = via.open(&store, "loss:").await;
    store.set("loss:before", &1).await.unwrap();
    let first = within(&mut events, Duration::from_secs(10)).await.expect("event").expect("no error");
    assert_eq!(first.key, "loss:before");
    let idle = within(&mut events, Duration::from_secs(2)).await;
    assert!(idle.is_none(), "a healthy idle watch reports nothing: {idle:?}");

    let killed = Instant::now();
    server.kill().await.expect("kill");
    let lost =
        within(&mut events, LOSS_REPORTED).await.expect("the loss is reported while the server is down");
    let delay = killed.elapsed();
    eprintln!("redis: loss reported {delay:?} after the kill");
    let lost = lost.expect_err("an error, not an event");
    assert_eq!(lost.kind(), ErrorKind::Unavailable, "{lost}");
    assert!(lost.to_string().contains("watch interrupted"), "{lost}");
    // fred keeps failing to reconnect meanwhile: still one error.
    let more = within(&mut events, Duration::from_secs(3)).await;
    assert!(more.is_none(), "one error per outage: {more:?}");

    server.start().await.expect("start");
    let (mut seen, mut errors) = (None, Vec::new());
    for i in 0..100 {
        if store.set("loss:after", &i).await.is_ok() {
            match within(&mut events, Duration::from_millis(300)).await {
                Some(Ok(e)) => {
                    seen = Some(e);
                    break;
                }
                Some(Err(e)) => errors.push(e),
                None => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = seen.expect("events flow again after the restart");
    assert_eq!(seen.key, "loss:after");
    // Pub/sub kept nothing for the gap: the resumption says so as well.
    assert!(errors.iter().any(|e| e.to_string().contains("re-established")), "{errors:?}");
    assert!(errors.iter().all(|e| e.kind() == ErrorKind::Unavailable), "{errors:?}");
    store.destroy().await.unwrap();
}

/// A frozen server closes no connection, yet it is reported within the
/// declared `watch_stall` (the subscriber's connection is pinged): Sentinel or a Cluster may fail
/// over to a server whose writes this connection never hears of (before,
/// nothing was said, and a near cache served a frozen master's values for
/// as long as it stayed frozen). Once it goes on, that is said too, and a
/// write queued meanwhile is still seen.
async fn a_frozen_server_is_reported_and_loses_no_event(via: Via) {
    let Some(mut server) = Server::start_dedicated(Kind::Redis, Options::default()).await else { return };
    let watcher = store(&server).await;
    let writer = RedisStateStore::builder(server.url())
        .command_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let mut events = via.open(&watcher, "frozen:").await;

    server.pause().await.expect("pause");
    let frozen = std::time::Instant::now();
    let write = tokio::spawn(async move {
        let done = writer.set("frozen:k", &1).await;
        (writer, done)
    });
    let bound = watcher.capabilities().watch_stall.expect("a declared bound");
    let during = within(&mut events, bound).await;
    let reported = frozen.elapsed();
    match during {
        Some(Err(e)) if e.kind() == ErrorKind::Unavailable && e.to_string().contains("interrupted") => {}
        other => panic!("a frozen server is reported as an interruption: {other:?}"),
    }
    assert!(within(&mut events, Duration::from_secs(2)).await.is_none(), "once per outage");
    server.resume().await.expect("resume");
    let (writer, done) = write.await.unwrap();
    done.expect("the queued write is applied once the server goes on");
    let mut errors = Vec::new();
    let seen = loop {
        match within(&mut events, Duration::from_secs(10)).await.expect("the event, after the resumption") {
            Ok(event) => break event,
            Err(e) => errors.push(e),
        }
    };
    assert_eq!(seen.key, "frozen:k");
    // The resumption may come before or after the event: wait for it too.
    if errors.is_empty() {
        errors.push(within(&mut events, Duration::from_secs(5)).await.expect("the resumption").unwrap_err());
    }
    assert!(errors.iter().any(|e| e.to_string().contains("answers again")), "{errors:?}");
    assert!(errors.iter().all(|e| e.kind() == ErrorKind::Unavailable), "{errors:?}");
    eprintln!("[redis_watch_loss] the freeze was reported after {reported:?}");
    writer.destroy().await.unwrap();
    watcher.destroy().await.unwrap();
}

/// An outage over before anyone looks is still reported: the loss, then the
/// reconnection (pub/sub replays nothing; a write made before it may be
/// missed), then the events after it.
async fn a_short_outage_is_reported_in_order(via: Via) {
    let Some(mut server) = Server::start_dedicated(Kind::Redis, Options::default()).await else { return };
    let store = store(&server).await;
    let mut events = via.open(&store, "blip:").await;
    server.kill().await.expect("kill");
    server.start().await.expect("start");
    let mut items = Vec::new();
    for i in 0..50 {
        if store.set("blip:new", &i).await.is_ok() {
            match within(&mut events, Duration::from_millis(300)).await {
                Some(Ok(e)) => {
                    items.push(Ok(e));
                    break;
                }
                Some(Err(e)) => items.push(Err(e)),
                None => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let texts: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    assert!(items.len() >= 3, "{texts:#?}");
    assert!(texts[0].contains("watch interrupted"), "the loss first: {texts:#?}");
    assert!(texts[1..items.len() - 1].iter().any(|t| t.contains("re-established")), "{texts:#?}");
    assert_eq!(items.last().unwrap().as_ref().map(|e| e.key.as_str()).ok(), Some("blip:new"), "{texts:#?}");
    store.destroy().await.unwrap();
}

/// Each case on both feeds, as `<case>::watch` and `<case>::tracking`.
macro_rules! on_both_feeds {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::Via;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn watch() {
                super::$case(Via::Watch).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn tracking() {
                super::$case(Via::Invalidations).await;
            }
        }
    )*};
}

on_both_feeds!(
    a_killed_server_is_reported_at_once_and_the_watch_resumes,
    a_frozen_server_is_reported_and_loses_no_event,
    a_short_outage_is_reported_in_order,
);
