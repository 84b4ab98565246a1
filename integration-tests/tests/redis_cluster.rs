//! A real 3-master Redis Cluster on loopback ports: what is specific to
//! Cluster, reads and listings across slots and nodes, and the hash-slot rule
//! of transactions. (`redis_cluster_suite.rs` runs the behaviour suite.)

mod support_redis;

use integration_tests::fixtures::redis_topology::Cluster;
use purista_core::{ErrorKind, Json, Op, StateStore, testkit::unique};
use purista_redis_state_store::fred::util::redis_keyslot;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_lists_and_transactions_across_slots() {
    let Some(cluster) = Cluster::start().await else { return };
    let store = support_redis::builder(&cluster.url()).connect().await.expect("connect to the cluster");
    assert!(store.is_cluster());
    let p = unique("spread");
    let keys: Vec<String> = (0..60).map(|i| format!("{p}:{i}")).collect();
    let slots: std::collections::HashSet<u16> = keys.iter().map(|k| redis_keyslot(k.as_bytes())).collect();
    assert!(slots.len() > 30, "keys spread over many slots");
    for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 3 != 0) {
        store.set(k, &i).await.unwrap();
    }
    // One get_state across every node, answers in the asked order.
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    let map = store.get_state(&names).await.expect("MGET grouped by slot");
    assert_eq!(map.len(), keys.len());
    for (i, k) in keys.iter().enumerate() {
        let want = (i % 3 != 0).then(|| Json::encode(&i).unwrap());
        assert_eq!(map[k], want, "{k}");
    }
    // Listing scans every primary.
    let listed = store.list_keys(&format!("{p}:")).await.unwrap();
    assert_eq!(listed.len(), 40, "keys from all three masters");

    // A transaction over several slots is refused with the rule, untouched.
    let (a, b) = (format!("{p}:tx-a"), format!("{p}:tx-b"));
    assert_ne!(redis_keyslot(a.as_bytes()), redis_keyslot(b.as_bytes()));
    let err = store
        .transaction(vec![Op::put(&a, Json::encode(&1).unwrap()), Op::put(&b, Json::encode(&2).unwrap())])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("hash slot") && err.to_string().contains("hash tag"), "{err}");
    assert!(!err.to_string().contains("CROSSSLOT"), "{err}");
    assert_eq!(store.get::<i32>(&a).await.unwrap(), None, "nothing written");
    // With a hash tag the same transaction goes through, atomically.
    let (a, b) = (format!("{{{p}}}:a"), format!("{{{p}}}:b"));
    store
        .transaction(vec![Op::put(&a, Json::encode(&1).unwrap()), Op::put(&b, Json::encode(&2).unwrap())])
        .await
        .expect("same slot");
    assert_eq!(store.get::<i32>(&b).await.unwrap(), Some(2));
    let stale = store.get_entry(&a).await.unwrap().unwrap().etag;
    store.set(&a, &10).await.unwrap();
    let err = store
        .transaction(vec![Op::put(&b, Json::encode(&3).unwrap()), Op::remove_if(&a, stale)])
        .await
        .unwrap_err();
    assert_eq!((err.kind(), err.key()), (ErrorKind::Conflict, Some(a.as_str())));
    assert_eq!(store.get::<i32>(&b).await.unwrap(), Some(2), "all or nothing");
    store.destroy().await.unwrap();
    eprintln!("cluster logs in {}", cluster.dir().display());
}
