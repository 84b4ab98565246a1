//! A NATS watch says at once that its connection is lost (server killed),
//! before the server is back, once per outage; after the restart events flow
//! again on the same stream; a healthy idle watch reports nothing.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use integration_tests::fixtures::{Kind, Options, Server};
use purista_core::{Error, ErrorKind, StateStore, WatchEvent, WatchStream};
use purista_nats_state_store::{NatsStateStore, Storage};

/// The bound on reporting a loss (generous: the watch checks every 100 ms).
const LOSS_REPORTED: Duration = Duration::from_secs(5);

/// The next item within `limit`; `None` if there is none by then.
async fn within(events: &mut WatchStream, limit: Duration) -> Option<Result<WatchEvent, Error>> {
    let item = tokio::time::timeout(limit, events.next()).await.ok()?;
    Some(item.expect("the watch stream stays open"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_is_reported_at_once_and_the_watch_resumes() {
    // File storage, synced on every write: the bucket outlives the kill.
    let Some(mut server) = Server::start_dedicated(Kind::Nats, Options { persistence: true }).await else {
        return;
    };
    let store = NatsStateStore::builder()
        .server(server.url())
        .bucket("watch_loss")
        .storage(Storage::File)
        .connect()
        .await
        .expect("connect");
    let mut events = store.watch("loss:").await.unwrap();
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
    eprintln!("nats: loss reported {delay:?} after the kill");
    let lost = lost.expect_err("an error, not an event");
    assert_eq!(lost.kind(), ErrorKind::Unavailable, "{lost}");
    assert!(lost.to_string().contains("watch interrupted"), "{lost}");
    // The client keeps failing to reconnect meanwhile: still one error.
    let more = within(&mut events, Duration::from_secs(3)).await;
    assert!(more.is_none(), "one error per outage: {more:?}");

    server.start().await.expect("start");
    let started = Instant::now();
    let mut seen = None;
    for i in 0..60 {
        if store.set("loss:after", &i).await.is_ok() {
            match within(&mut events, Duration::from_millis(500)).await {
                Some(Ok(e)) => {
                    seen = Some(e);
                    break;
                }
                Some(Err(e)) => panic!("nothing was lost once the server is back: {e}"),
                None => {}
            }
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let seen = seen.expect("events flow again after the restart");
    eprintln!("nats: events flowing {:?} after the start", started.elapsed());
    assert_eq!(seen.key, "loss:after");
    store.destroy().await.unwrap();
}

/// Defects: an outage shorter than a check went unreported, the watch then
/// stalled for 10 s (until the ordered consumer missed two heartbeats), and
/// a watch that had seen no event yet replayed the whole history under its
/// prefix as new events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_outage_is_reported_and_neither_stalls_nor_replays() {
    let Some(mut server) = Server::start_dedicated(Kind::Nats, Options { persistence: true }).await else {
        return;
    };
    let store = NatsStateStore::builder()
        .server(server.url())
        .bucket("watch_blip")
        .storage(Storage::File)
        .connect()
        .await
        .expect("connect");
    for i in 0..3 {
        store.set(&format!("blip:old{i}"), &i).await.unwrap();
    }
    let mut events = store.watch("blip:").await.unwrap();
    server.kill().await.expect("kill");
    server.start().await.expect("start");
    let restarted = Instant::now();
    let mut written = false;
    for i in 0..50 {
        if store.set("blip:new", &i).await.is_ok() {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(written, "the store writes again");
    let lost = within(&mut events, LOSS_REPORTED).await.expect("the outage is reported");
    let lost = lost.expect_err("the error comes first");
    assert!(lost.to_string().contains("watch interrupted"), "{lost}");
    let seen = within(&mut events, Duration::from_secs(3)).await.expect("no stall").expect("an event");
    eprintln!("nats: the write after a short outage seen {:?} after the start", restarted.elapsed());
    assert_eq!(seen.key, "blip:new", "only changes made after the watch began");
    let more = within(&mut events, Duration::from_secs(1)).await;
    assert!(more.is_none(), "nothing else: {more:?}");
    store.destroy().await.unwrap();
}

/// A frozen server (SIGSTOP) keeps the connection open: the client notices
/// only after its pings go unanswered (60 s apart by default), and the watch
/// consumer after two missed heartbeats (10 s), but the watch's own probe
/// reports it within the declared `watch_stall`; once the server goes on,
/// events flow again. A healthy idle watch stays quiet past both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_is_reported_within_the_declared_stall() {
    let Some(mut server) = Server::start_dedicated(Kind::Nats, Options::default()).await else { return };
    let store =
        NatsStateStore::builder().server(server.url()).bucket("watch_frozen").connect().await.unwrap();
    let mut events = store.watch("frozen:").await.unwrap();
    let idle = within(&mut events, Duration::from_secs(12)).await;
    assert!(idle.is_none(), "heartbeats keep a healthy idle watch quiet: {idle:?}");

    let paused = Instant::now();
    server.pause().await.expect("pause");
    let bound = store.capabilities().watch_stall.expect("a declared bound");
    let stalled = within(&mut events, bound).await.expect("the stall is reported within the declared bound");
    eprintln!("nats: frozen server reported {:?} after the pause", paused.elapsed());
    let stalled = stalled.expect_err("an error, not an event");
    assert_eq!(stalled.kind(), ErrorKind::Unavailable, "{stalled}");
    assert!(stalled.to_string().contains("watch interrupted"), "{stalled}");
    server.resume().await.expect("resume");

    let resumed = Instant::now();
    let mut seen = None;
    for i in 0..30 {
        if store.set("frozen:k", &i).await.is_ok() {
            match within(&mut events, Duration::from_millis(500)).await {
                Some(Ok(e)) => {
                    seen = Some(e);
                    break;
                }
                Some(Err(e)) => panic!("one error per stall: {e}"),
                None => {}
            }
        }
    }
    let seen = seen.expect("events flow again after the freeze");
    eprintln!("nats: events flowing {:?} after the resume", resumed.elapsed());
    assert_eq!(seen.key, "frozen:k");
    store.destroy().await.unwrap();
}
