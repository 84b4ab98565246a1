//! Several store instances (each its own connection) on one sidecar: the
//! conditional operations decide exactly once.

use std::{future::Future, sync::Arc, time::Duration};

use purista_core::{ErrorKind, Json, Op, PutMode, PutOptions, StateStore};
use purista_dapr_sdk::{DaprConfig, DaprStateStore, emulator::Sidecar};

const INSTANCES: usize = 8;
/// Bounds every retry loop: a conflict storm never spins forever.
const MAX_CONFLICTS: u32 = 100_000;

/// A sidecar on the test's multi-threaded runtime (its handlers run in
/// parallel) and `INSTANCES` stores on it, each with its own channel. The
/// long timeout keeps every answer definite: a timeout would leave a write
/// possibly applied, which no exactly-once count can include.
async fn instances() -> (Sidecar, Vec<DaprStateStore>) {
    let sidecar = Sidecar::start().await.unwrap();
    let mut stores = Vec::with_capacity(INSTANCES);
    for _ in 0..INSTANCES {
        let config =
            DaprConfig::default().endpoint(sidecar.endpoint()).request_timeout(Duration::from_secs(60));
        stores.push(DaprStateStore::connect(config).await.unwrap());
    }
    (sidecar, stores)
}

/// Runs `work(instance index, store)` on every instance at once, after a barrier.
async fn on_every_instance<T, F, Fut>(stores: Vec<DaprStateStore>, work: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize, DaprStateStore) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(stores.len()));
    let tasks: Vec<_> = stores
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let barrier = barrier.clone();
            let work = work(i, s);
            tokio::spawn(async move {
                barrier.wait().await;
                work.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("instance task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cas_counter_across_instances_is_exact() {
    const INCREMENTS: u64 = 25;
    let (sidecar, stores) = instances().await;
    on_every_instance(stores, |_, s| async move {
        let mut conflicts = 0u32;
        for _ in 0..INCREMENTS {
            loop {
                let (n, mode) = match s.get_entry("counter").await.expect("read") {
                    Some(e) => (e.value.decode::<u64>().unwrap(), PutMode::Update(e.etag)),
                    None => (0, PutMode::Create),
                };
                match s.put("counter", Json::encode(&(n + 1)).unwrap(), PutOptions { mode, ttl: None }).await
                {
                    Ok(_) => break,
                    Err(e) if e.kind() == ErrorKind::Conflict => {
                        conflicts += 1;
                        assert!(conflicts < MAX_CONFLICTS, "no progress");
                    }
                    Err(e) => panic!("increment failed: {e:?}"),
                }
            }
        }
    })
    .await;
    let check = DaprStateStore::connect(DaprConfig::default().endpoint(sidecar.endpoint())).await.unwrap();
    assert_eq!(check.get::<u64>("counter").await.unwrap(), Some(INSTANCES as u64 * INCREMENTS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_one_create_only_write_wins() {
    const ROUNDS: usize = 20;
    let (sidecar, stores) = instances().await;
    let outcomes = on_every_instance(stores, |i, s| async move {
        let mut won = Vec::new();
        for round in 0..ROUNDS {
            let key = format!("create-{round}");
            match s.put(&key, Json::encode(&i).unwrap(), PutOptions::create()).await {
                Ok(_) => won.push(round),
                Err(e) if e.kind() == ErrorKind::Conflict => assert_eq!(e.key(), Some(key.as_str())),
                Err(e) => panic!("create failed: {e:?}"),
            }
        }
        (i, won)
    })
    .await;
    let check = DaprStateStore::connect(DaprConfig::default().endpoint(sidecar.endpoint())).await.unwrap();
    for round in 0..ROUNDS {
        let winners: Vec<usize> =
            outcomes.iter().filter(|(_, won)| won.contains(&round)).map(|(i, _)| *i).collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let stored = check.get::<usize>(&format!("create-{round}")).await.unwrap();
        assert_eq!(stored, Some(winners[0]), "round {round}: the winner's value is stored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contended_transactions_are_all_or_nothing() {
    const TRANSFERS: usize = 15;
    let (sidecar, stores) = instances().await;
    stores[0].set("a", &0i64).await.unwrap();
    stores[0].set("b", &0i64).await.unwrap();
    // Each transfer moves 1 from a to b, both under their ETags, and creates
    // its own receipt (create-only) in the same transaction: a transaction
    // applied in part would leave a receipt behind and make its retry
    // conflict for ever, or break a + b = 0.
    let done = on_every_instance(stores, |i, s| async move {
        let mut conflicts = 0u32;
        for t in 0..TRANSFERS {
            let receipt = format!("receipt-{i}-{t}");
            loop {
                let a = s.get_entry("a").await.expect("read a").expect("a exists");
                let b = s.get_entry("b").await.expect("read b").expect("b exists");
                let (va, vb) = (a.value.decode::<i64>().unwrap(), b.value.decode::<i64>().unwrap());
                let ops = vec![
                    Op::put_with("a", Json::encode(&(va - 1)).unwrap(), PutOptions::update(a.etag)),
                    Op::put_with(&receipt, Json::encode(&t).unwrap(), PutOptions::create()),
                    Op::put_with("b", Json::encode(&(vb + 1)).unwrap(), PutOptions::update(b.etag)),
                ];
                match s.transaction(ops).await {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::Conflict => {
                        assert_ne!(e.key(), Some(receipt.as_str()), "a failed transaction left its receipt");
                        conflicts += 1;
                        assert!(conflicts < MAX_CONFLICTS, "no progress");
                    }
                    Err(e) => panic!("transfer failed: {e:?}"),
                }
            }
        }
        TRANSFERS
    })
    .await;
    let total: usize = done.iter().sum();
    let check = DaprStateStore::connect(DaprConfig::default().endpoint(sidecar.endpoint())).await.unwrap();
    assert_eq!(check.get::<i64>("a").await.unwrap(), Some(-(total as i64)));
    assert_eq!(check.get::<i64>("b").await.unwrap(), Some(total as i64));
    let receipts = sidecar.stored_keys("statestore").iter().filter(|k| k.contains("||receipt-")).count();
    assert_eq!(receipts, total, "one receipt per transfer");
}
