//! Faults: a file-storage server restarted or killed during writes loses no
//! acknowledged write, and the store reconnects by itself; a 3-node cluster
//! with a 3-replica bucket keeps every acknowledged write when a node dies;
//! a server down or frozen fails writes in bounded time, and they recover.

mod support_nats;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use integration_tests::{
    fixtures::{Kind, Options, Server, nats_cluster::Cluster},
    ports::free_port,
};
use purista_core::{StateStore, StateStoreExt};
use purista_nats_state_store::{NatsStateStore, Storage};
use tokio::task::JoinHandle;

/// What a writer saw: the writes the server acknowledged, in order, and how
/// many failed.
struct Written {
    acked: Vec<(u64, Instant)>,
    failed: u64,
}

/// Writes `w:<i>` = i for i = 0, 1, ... until told to stop, each write once;
/// counts acknowledged writes in `acks`.
fn writer(store: Arc<dyn StateStore>, stop: Arc<AtomicBool>, acks: Arc<AtomicU64>) -> JoinHandle<Written> {
    tokio::spawn(async move {
        let mut written = Written { acked: Vec::new(), failed: 0 };
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            match store.set(&format!("w:{i}"), &i).await {
                Ok(()) => {
                    written.acked.push((i, Instant::now()));
                    acks.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    written.failed += 1;
                    if written.failed % 20 == 1 {
                        eprintln!("write {i} failed: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            i += 1;
        }
        written
    })
}

/// Every acknowledged write reads back (retrying briefly for replicas to catch up).
async fn check_acked(store: &dyn StateStore, written: &Written) {
    for (i, _) in &written.acked {
        let key = format!("w:{i}");
        let mut value = None;
        for _ in 0..50 {
            match store.get::<u64>(&key).await {
                Ok(Some(v)) => {
                    value = Some(v);
                    break;
                }
                Ok(None) | Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        assert_eq!(value, Some(*i), "acknowledged write {key} lost");
    }
}

async fn restart_during_writes(kill: bool) {
    let Some(mut server) = Server::start_dedicated(Kind::Nats, Options { persistence: true }).await else {
        return;
    };
    let store: Arc<dyn StateStore> = Arc::new(
        NatsStateStore::builder()
            .server(server.url())
            .bucket("faults")
            .storage(Storage::File)
            .connect()
            .await
            .expect("connect"),
    );
    let mut watch = store.watch("after:").await.expect("watch");
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let task = writer(store.clone(), stop.clone(), acks.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    if kill {
        server.kill().await.expect("kill");
        server.start().await.expect("start");
    } else {
        server.restart().await.expect("restart");
    }
    let back = Instant::now();
    // Give the client time to reconnect (a write in flight during the outage
    // waits out its ack timeout), then to write some more.
    let before = acks.load(Ordering::Relaxed);
    let deadline = back + Duration::from_secs(30);
    while acks.load(Ordering::Relaxed) < before + 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("writes flowing again {:?} after the server came back", back.elapsed());
    stop.store(true, Ordering::Relaxed);
    let written = task.await.expect("writer");
    let after = written.acked.iter().filter(|(_, t)| *t > back).count();
    eprintln!(
        "{}: {} writes acknowledged ({after} after the server came back), {} failed",
        if kill { "kill" } else { "restart" },
        written.acked.len(),
        written.failed
    );
    assert!(after > 0, "the same store wrote again after the server came back");
    check_acked(&*store, &written).await;

    // The watch opened before the outage said it was interrupted, and
    // reports writes made after it.
    let since = Instant::now();
    let (mut seen, mut interrupted) = (None, false);
    let mut n = 0;
    while seen.is_none() && since.elapsed() < Duration::from_secs(30) {
        n += 1;
        store.set(&format!("after:{n}"), &n).await.expect("write after the outage");
        match tokio::time::timeout(Duration::from_secs(1), watch.next()).await {
            Ok(Some(Ok(event))) => seen = Some(event),
            Ok(Some(Err(e))) => {
                assert!(e.to_string().contains("watch interrupted"), "{e}");
                interrupted = true;
            }
            _ => {}
        }
    }
    let seen = seen.expect("the watch resumed after the outage");
    assert!(interrupted, "the watch reported the outage");
    assert!(seen.key.starts_with("after:"), "{seen:?}");
    eprintln!("watch resumed {:?} after the writes went on", since.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_restart_loses_no_acknowledged_write() {
    restart_during_writes(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_loses_no_acknowledged_write() {
    restart_during_writes(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_node_death_loses_no_acknowledged_write() {
    let Some(mut cluster) = Cluster::start().await else { return };
    let urls = cluster.urls();
    let store = support_nats::cluster::connect(|| {
        NatsStateStore::builder().servers(urls.clone()).bucket("cluster").replicas(3).storage(Storage::File)
    })
    .await;
    let connected = store.client().server_info().port;
    let store: Arc<dyn StateStore> = Arc::new(store);
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let task = writer(store.clone(), stop.clone(), acks.clone());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // Kill the node the client is connected to: the client must move on too.
    let victim = cluster.nodes.iter().position(|n| n.port() == connected).unwrap_or(0);
    cluster.nodes[victim].kill();
    let killed = Instant::now();
    // Writes stop until the stream has a leader again: when the dead node
    // led it, the election alone may take nats-server's longest election
    // timeout (9 s), more on a busy machine (an 8 s window once saw none).
    // Wait for 200 writes after the kill, for at most 40 s.
    let before = acks.load(Ordering::Relaxed);
    while acks.load(Ordering::Relaxed) < before + 200 && killed.elapsed() < Duration::from_secs(40) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let written = task.await.expect("writer");
    let after = written.acked.iter().filter(|(_, t)| *t > killed).count();
    let first_after = written.acked.iter().find(|(_, t)| *t > killed).map(|(_, t)| t.duration_since(killed));
    eprintln!(
        "cluster: {} writes acknowledged ({after} after node n{} died, first after {first_after:?}), {} failed",
        written.acked.len(),
        victim + 1,
        written.failed
    );
    assert!(after > 0, "writes go on with two of three nodes");
    check_acked(&*store, &written).await;
}

/// Nothing listening: connecting fails at once with `Unavailable`, naming no
/// credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_at_connect_is_unavailable() {
    let url = format!("nats://user:s3cret@127.0.0.1:{}", free_port());
    let started = Instant::now();
    let err = NatsStateStore::connect(url).await.expect_err("no server listens there");
    assert_eq!(err.kind(), purista_core::ErrorKind::Unavailable, "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "bounded: {:?}", started.elapsed());
    assert!(!format!("{err} {err:?}").contains("s3cret"), "password leaked: {err:?}");
}

/// The server stopped, then frozen (SIGSTOP / docker pause): writes fail with
/// `Unavailable` or `Timeout` within a bounded time, never hang, and the same
/// store works again once the server is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_gone_or_frozen_fails_in_bounded_time_then_recovers() {
    let Some(mut server) = Server::start_dedicated(Kind::Nats, Options { persistence: true }).await else {
        return;
    };
    let store = NatsStateStore::builder().server(server.url()).connect().await.expect("connect");
    store.set("fault", &0).await.expect("write before the fault");
    for (fault, down) in [("stopped", true), ("paused", false)] {
        if down {
            server.stop().await.unwrap()
        } else {
            server.pause().await.unwrap()
        }
        let started = Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(30), store.set("fault", &1))
            .await
            .unwrap_or_else(|_| panic!("write hung for 30 s with the server {fault}"))
            .expect_err("no server to acknowledge");
        let took = started.elapsed();
        use purista_core::ErrorKind::{Timeout, Unavailable};
        assert!(matches!(err.kind(), Unavailable | Timeout), "server {fault}: {err}");
        assert!(took < Duration::from_secs(15), "server {fault}: failed after {took:?}");
        eprintln!("server {fault}: write failed after {took:?} with {:?}", err.kind());
        if down {
            server.start().await.unwrap()
        } else {
            server.resume().await.unwrap()
        }
        let back = Instant::now();
        loop {
            match store.set("fault", &2).await {
                Ok(()) => break,
                Err(e) if back.elapsed() < Duration::from_secs(20) => {
                    eprintln!("not yet back: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("store did not recover after the server was {fault}: {e}"),
            }
        }
        assert_eq!(store.get::<u64>("fault").await.unwrap(), Some(2), "recovered after {fault}");
    }
}
