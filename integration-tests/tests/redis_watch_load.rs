//! Watch under load, on a real `redis-server` of each test's own: bursts,
//! a watcher that fell behind, own writes and foreign removes in one order,
//! and a value racing its notification. (`redis_watch.rs` has the rest.)

mod support_redis;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use futures_util::{StreamExt, future::join_all};
use purista_core::{Json, Op, StateStore, WatchKind};
use purista_redis_state_store::{
    RedisStateStore,
    fred::interfaces::{ClientLike, KeysInterface},
};
use support_redis::watch::{converge, next, raw, start};

/// Defect: a transaction of 50 writes yielded 32 events and "fell behind"
/// errors (fred's broadcast channels hold 32 messages by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_writes_loses_nothing() {
    let Some(server) = start().await else { return };
    let store = RedisStateStore::connect(&server.url()).await.unwrap();
    let mut events = store.watch("b:").await.unwrap();
    for round in 0..5 {
        let ops: Vec<Op> =
            (0..100).map(|i| Op::put(format!("b:{round}:{i}"), Json::encode(&i).unwrap())).collect();
        store.transaction(ops).await.unwrap();
        for i in 0..100 {
            let e = next(&mut events).await;
            assert_eq!(e.key, format!("b:{round}:{i}"), "in order, none missing");
            assert!(matches!(&e.kind, WatchKind::Set { value, .. } if value.decode::<i32>().unwrap() == i));
        }
    }
    store.destroy().await.unwrap();
}

/// Defect: after falling behind, the counts of notifications still expected
/// for the watcher's own writes were kept, so a later foreign write to the
/// same key was taken for one of them and swallowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_falling_behind_a_foreign_write_is_seen() {
    let Some(server) = start().await else { return };
    let store = RedisStateStore::connect(&server.url()).await.unwrap();
    let raw = raw(&server).await;
    let mut events = store.watch("lag:").await.unwrap();
    // Nobody reads while 6,000 changes arrive: more than any buffer holds.
    let ops: Vec<Op> = (0..6000).map(|i| Op::put("lag:k", Json::encode(&i).unwrap())).collect();
    store.transaction(ops).await.unwrap();
    let mut errors = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    // Caught up: the error was yielded and the stream went quiet.
    loop {
        assert!(Instant::now() < deadline, "the watcher did not catch up");
        match tokio::time::timeout(Duration::from_secs(1), events.next()).await {
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => {
                assert!(e.to_string().contains("fell behind"), "{e}");
                errors += 1;
            }
            Ok(None) => panic!("stream ended"),
            Err(_) if errors > 0 => break,
            Err(_) => {}
        }
    }
    let _: () = raw.set("lag:k", r#""foreign""#, None, None, false).await.unwrap();
    // A loaded machine can go quiet for a second before the backlog is
    // through: a later "fell behind" is the same loss, reported again.
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
            Ok(Some(Ok(e))) => {
                if matches!(&e.kind, WatchKind::Set { value, .. } if value.as_str() == Some(r#""foreign""#)) {
                    break;
                }
            }
            Ok(Some(Err(e))) => assert!(e.to_string().contains("fell behind"), "{e}"),
            Ok(None) => panic!("stream ended"),
            Err(_) => panic!("the foreign write was not seen within 10 s"),
        }
    }
    raw.quit().await.unwrap();
    store.destroy().await.unwrap();
}

/// Defect: values (published by the store's writes) and keyspace
/// notifications (every writer) arrive on two channels; taken out of order,
/// a foreign remove between two own writes came last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_writes_and_foreign_removes_converge() {
    let Some(server) = start().await else { return };
    let store = RedisStateStore::connect(&server.url()).await.unwrap();
    let raw = raw(&server).await;
    let mut events = store.watch("o:").await.unwrap();
    for round in 0..10 {
        let keys: Vec<String> = (0..50).map(|i| format!("o:{round}:{i}")).collect();
        join_all(keys.iter().map(|k| {
            let (store, raw) = (&store, &raw);
            async move {
                store.set(k, &1).await.unwrap();
                let _: i64 = raw.del(k.as_str()).await.unwrap();
                store.set(k, &2).await.unwrap();
            }
        }))
        .await;
        let want = keys.iter().map(|k| (k.clone(), Some("2".to_owned()))).collect();
        converge(&mut events, &want).await;
    }
    raw.quit().await.unwrap();
    store.destroy().await.unwrap();
}

/// Defect: a write's published value and its keyspace notification come on
/// two fred channels. When the value came after the watcher had found the
/// values channel empty, but before it looked at the notifications, the
/// notification was taken first and missed its value; from then on each
/// notification of that key took the value of the write before it, and the
/// last event was not the final state (no error said so). The race needs
/// fred's reader and a watcher on two threads at the same instant: many
/// watchers, a runtime with more threads than cores, threads spinning
/// beside it, and only writes (a key once shifted stays shifted).
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn a_value_arriving_while_its_notification_is_taken_is_matched() {
    let Some(server) = start().await else { return };
    let busy = Arc::new(AtomicBool::new(true));
    // Bounded: stopped once the watchers are done, and after 60 s at most.
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let busy = Arc::clone(&busy);
            std::thread::spawn(move || {
                let end = Instant::now() + Duration::from_secs(60);
                while busy.load(Relaxed) && Instant::now() < end {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let watchers: Vec<_> = (0..16)
        .map(|w| {
            let url = server.url();
            tokio::spawn(async move {
                let store = RedisStateStore::connect(&url).await.unwrap();
                let prefix = format!("race:{w}:");
                let mut events = store.watch(&prefix).await.unwrap();
                let keys: Vec<String> = (0..8).map(|i| format!("{prefix}{i}")).collect();
                for round in 0..150 {
                    for done in join_all(keys.iter().map(|k| store.set(k, &round))).await {
                        done.unwrap();
                    }
                }
                let want = keys.iter().map(|k| (k.clone(), Some("149".to_owned()))).collect();
                converge(&mut events, &want).await;
                store.destroy().await.unwrap();
            })
        })
        .collect();
    let results = join_all(watchers).await;
    busy.store(false, Relaxed);
    for spinner in spinners {
        spinner.join().unwrap();
    }
    for result in results {
        if let Err(e) = result {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}
