//! Redis behind Sentinel (master, replica, one sentinel on loopback ports):
//! a `SENTINEL FAILOVER` during writes: the
//! store follows the new master by itself, and with its default of waiting
//! for a replica no acknowledged write is lost. (Without waiting, writes the
//! old master took between the promotion and the `+switch-master`
//! announcement are lost: Sentinel's failover is not write-paused, and
//! replication is asynchronous.)

mod support_redis;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use integration_tests::fixtures::redis_topology::{SERVICE, Sentinel, cli};
use purista_core::{ErrorKind, StateStore, StateStoreExt, testkit::unique};

/// By default behind Sentinel a write is acknowledged only once the replica
/// has it: nothing acknowledged is lost when the replica is promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_during_writes_loses_no_acknowledged_write() {
    failover(true).await;
}

/// With waiting turned off the store still follows the new master by
/// itself, at once (sentinel `+switch-master`); writes the old master took
/// in the moment of the switch are Redis's documented asynchronous-replication
/// window, counted and printed here.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_is_followed_without_waiting_for_replicas() {
    failover(false).await;
}

async fn failover(wait: bool) {
    let Some(sentinel) = Sentinel::start().await else { return };
    let mut builder = support_redis::builder(&sentinel.url()).command_timeout(Duration::from_secs(1));
    if !wait {
        builder = builder.wait_for_replicas(0, Duration::ZERO);
    }
    let store: Arc<dyn StateStore> = Arc::new(builder.connect().await.expect("connect through sentinel"));
    assert_eq!(sentinel.current_master(), sentinel.master);
    let prefix = unique("failover");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut writers = Vec::new();
    for w in 0..4 {
        let (store, prefix, stop_rx) = (store.clone(), prefix.clone(), stop_rx.clone());
        writers.push(tokio::spawn(async move {
            let (mut acked, mut failed, mut i) = (Vec::new(), 0u32, 0u64);
            while !*stop_rx.borrow() {
                let key = format!("{prefix}:{w}:{i}");
                match store.set(&key, &i).await {
                    Ok(()) => {
                        acked.push((key, i, Instant::now()));
                        // Paced: writers flat out starve the sentinel and
                        // the replica of the 2 cores CI has.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err(e) => {
                        assert!(matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Timeout), "{e:?}");
                        failed += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                i += 1;
            }
            (acked, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let failover_at = Instant::now();
    let out = cli(sentinel.sentinel, &["SENTINEL", "FAILOVER", SERVICE]);
    assert!(out.contains("OK"), "SENTINEL FAILOVER: {out}");
    // Generous: on a loaded machine the promotion can take seconds.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sentinel.current_master() != sentinel.replica {
        assert!(Instant::now() < deadline, "failover did not complete");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let switched = failover_at.elapsed();
    // Until the old master is demoted to a replica of the new one (sentinel
    // does it within its 10 s INFO period), then a little longer.
    while !cli(sentinel.master, &["INFO", "replication"]).contains("role:slave") {
        assert!(Instant::now() < deadline, "old master not demoted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let demoted = failover_at.elapsed();
    while !cli(sentinel.replica, &["INFO", "replication"]).contains("state=online") {
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "old master never synced with the new one"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_tx.send(true).unwrap();
    let (mut all, mut failures) = (Vec::new(), 0);
    for w in writers {
        let (acked, failed) = w.await.unwrap();
        all.extend(acked);
        failures += failed;
    }
    let after = all.iter().filter(|(_, _, t)| *t > failover_at + switched).count();
    assert!(after > 50, "the store followed the new master by itself ({after} writes after the switch)");
    // Everything is read from the new master now (the old one is its replica).
    let mut lost = Vec::new();
    for chunk in all.chunks(500) {
        let names: Vec<&str> = chunk.iter().map(|(k, _, _)| k.as_str()).collect();
        let map = store.get_state(&names).await.expect("read after failover");
        for (k, i, _) in chunk {
            if map[k.as_str()] != Some(purista_core::Json::encode(i).unwrap()) {
                lost.push(k.clone());
            }
        }
    }
    let last = &all.iter().max_by_key(|(_, _, t)| *t).unwrap().0;
    assert!(!cli(sentinel.replica, &["GET", last]).trim().is_empty(), "the last write is on the new master");
    eprintln!(
        "failover (wait_for_replicas: {wait}): switch announced after {switched:?}, old master demoted after \
         {demoted:?}; {} acknowledged writes ({after} after the switch), {failures} failed, {} lost",
        all.len(),
        lost.len()
    );
    if wait {
        assert!(lost.is_empty(), "acknowledged writes lost: {:?}", &lost[..lost.len().min(10)]);
    }
}
