//! `destroy` while calls are in flight: every caller gets an answer, and the
//! store's connections close, even those a background task was using.

mod support_redis;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use purista_core::StateStore;
use purista_redis_state_store::{
    RedisStateStore,
    fred::{clients::Client, interfaces::ClientLike},
};
use support_redis::watch::{command, raw, start};

/// Connections the server has open.
async fn connections(raw: &Client) -> usize {
    command(raw, "CLIENT", vec!["LIST"]).await.as_string().unwrap_or_default().lines().count()
}

/// Defect guarded against: the task sending combined increments held a
/// share of the connection, so `destroy` on the user's last handle left
/// the connection open (or the task closed it under another handle).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_during_combined_increments_answers_every_caller_and_closes_the_connection() {
    let Some(server) = start().await else { return };
    let raw = raw(&server).await;
    let alone = connections(&raw).await;
    let timeout = Duration::from_secs(1);
    let store = RedisStateStore::builder(server.url()).command_timeout(timeout).connect().await.unwrap();
    let store = Arc::new(store);
    assert!(connections(&raw).await > alone, "the store connected");
    let sums = Arc::new(Mutex::new(Vec::new()));
    let stop = Instant::now() + Duration::from_secs(20);
    // 32 tasks on one instance: while one increment is on its way, the
    // others queue and go as one.
    let callers: Vec<_> = (0..32)
        .map(|_| {
            let (store, sums) = (store.clone(), sums.clone());
            tokio::spawn(async move {
                while Instant::now() < stop {
                    let call = store.increment("c", 1, None);
                    // A call the destroyed store no longer sends waits out
                    // its command timeout; one queued behind such a batch,
                    // that batch's too.
                    match tokio::time::timeout(3 * timeout, call).await {
                        Ok(Ok(sum)) => sums.lock().unwrap().push(sum),
                        // Destroyed: this caller is done.
                        Ok(Err(_)) => return,
                        Err(_) => panic!("an increment got no answer within 3 s"),
                    }
                }
            })
        })
        .collect();
    while sums.lock().unwrap().len() < 500 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    store.destroy().await.unwrap();
    for caller in callers {
        caller.await.unwrap();
    }
    assert!(Instant::now() < stop, "the calls on the destroyed store failed");
    for _ in 0..100 {
        if connections(&raw).await == alone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(connections(&raw).await, alone, "the store's connections closed within 10 s");
    // Every acknowledged increment counted once.
    let mut sums = std::mem::take(&mut *sums.lock().unwrap());
    sums.sort_unstable();
    assert!(sums.windows(2).all(|w| w[0] < w[1]), "each acknowledged sum is distinct");
    let value: i64 = command(&raw, "GET", vec!["c"]).await.as_string().unwrap().parse().unwrap();
    assert!(value >= sums.len() as i64 && value >= *sums.last().unwrap(), "{value} counts {}", sums.len());
    raw.quit().await.unwrap();
}
