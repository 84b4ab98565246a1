//! `get_state` on NATS: one batched direct get where the server has it,
//! answering like key-by-key reads, at one point in time, key by key
//! without it, bounded with the server gone, and never answered by a mirror
//! that has not caught up. (`nats_direct_get.rs` has odd server answers.)

mod support_nats;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use async_nats::jetstream::kv;
use integration_tests::fixtures::NatsServer;
use purista_core::{ErrorKind, Json, PutOptions, StateStore};
use purista_nats_state_store::{NatsStateStore, key};
use support_nats::{EDGE, builder, raw, url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_state_beats_one_by_one_gets() {
    let Some(url) = url().await else { return };
    let store = builder(&url, "bulk").connect().await.unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("bulk:{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        store.set(k, &i).await.unwrap();
    }
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    let started = Instant::now();
    let map = store.get_state(&names).await.unwrap();
    let bulk = started.elapsed();
    let started = Instant::now();
    for k in &names {
        store.get::<usize>(k).await.unwrap();
    }
    let one_by_one = started.elapsed();
    eprintln!("200 keys: get_state {bulk:?}, one by one {one_by_one:?}");
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(map[k.as_str()], Some(Json::encode(&i).unwrap()));
    }
    assert!(bulk < one_by_one, "one batched get beats sequential ones");
}

/// Writes every kind of entry a bucket holds for a key (under the store's own
/// key prefix, `key_prefix`) and returns the names to ask for, repeats
/// included, with the answer each must get.
async fn mixed_entries(
    store: &NatsStateStore,
    bucket: &kv::Store,
    key_prefix: &str,
) -> (Vec<String>, BTreeMap<String, Option<Json>>) {
    let raw_key = |name: &str| key::encode(&format!("{key_prefix}{name}"));
    let mut want = BTreeMap::new();
    // First, so that it has run out by the time everything else is written.
    let ttl_set = Instant::now();
    store
        .put("expired", Json::encode(&0).unwrap(), PutOptions::default().ttl(Duration::from_secs(1)))
        .await
        .unwrap();
    want.insert("expired".to_string(), None);

    let put = |name: &'static str, v: i64| async move {
        store.set(name, &v).await.unwrap();
        (name.to_string(), Some(Json::encode(&v).unwrap()))
    };
    want.extend([put("live.1", 1).await, put("user.42", 42).await]);
    store
        .put("ttl.long", Json::encode(&"x").unwrap(), PutOptions::default().ttl(Duration::from_secs(60)))
        .await
        .unwrap();
    want.insert("ttl.long".to_string(), Some(Json::encode(&"x").unwrap()));
    for (i, k) in EDGE.iter().enumerate() {
        let name = format!("edge:{k}");
        store.set(&name, &i).await.unwrap();
        want.insert(name, Some(Json::encode(&i).unwrap()));
    }
    for name in ["deleted", "purged", "raw.deleted"] {
        store.set(name, &1).await.unwrap();
        want.insert(name.to_string(), None);
    }
    store.remove_state("deleted").await.unwrap();
    bucket.purge(raw_key("purged")).await.unwrap();
    bucket.delete(raw_key("raw.deleted")).await.unwrap();
    // Written by another client.
    bucket.put(raw_key("raw:put"), r#"{"by":"raw"}"#.into()).await.unwrap();
    want.insert("raw:put".to_string(), Some(Json::from_stored(r#"{"by":"raw"}"#)));
    for name in ["missing", "missing:too", "ключ.missing"] {
        want.insert(name.to_string(), None);
    }
    let mut names: Vec<String> = want.keys().cloned().collect();
    names.extend(["live.1", "missing", "edge:a b", "live.1"].map(String::from));

    let left = Duration::from_millis(2500).saturating_sub(ttl_set.elapsed());
    tokio::time::sleep(left).await;
    (names, want)
}

/// `get_state` of `names` is `want`, and each name read on its own agrees.
async fn assert_reads(store: &NatsStateStore, names: &[String], want: &BTreeMap<String, Option<Json>>) {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let state = store.get_state(&refs).await.unwrap();
    let got: BTreeMap<String, Option<Json>> = state.into_iter().collect();
    assert_eq!(&got, want, "get_state");
    for name in names {
        assert_eq!(&store.get_value(name).await.unwrap(), &want[name], "get_value({name:?})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_state_batched_matches_key_by_key_reads() {
    let Some(url) = url().await else { return };
    let prefix = "svc:1.";
    let store = builder(&url, "batched")
        .store_config(purista_core::StoreConfig::default().key_prefix(prefix))
        .connect()
        .await
        .unwrap();
    assert!(format!("{store:?}").contains("batched_get: true"), "{store:?}");
    let js = raw(&url).await;
    let bucket = js.get_key_value(store.bucket()).await.unwrap();
    let (names, want) = mixed_entries(&store, &bucket, prefix).await;
    assert_reads(&store, &names, &want).await;

    // The same entries through a store without the prefix.
    let plain = builder(&url, "batched").bucket(store.bucket()).connect().await.unwrap();
    let full: Vec<String> = names.iter().map(|n| format!("{prefix}{n}")).collect();
    let want: BTreeMap<String, Option<Json>> =
        want.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)).collect();
    assert_reads(&plain, &full, &want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_state_falls_back_to_key_by_key_without_direct_get() {
    let Some(url) = url().await else { return };
    let first = builder(&url, "nodirect").connect().await.unwrap();
    let js = raw(&url).await;
    let stream = js.get_stream(format!("KV_{}", first.bucket())).await.unwrap();
    let mut config = stream.cached_info().config.clone();
    config.allow_direct = false;
    js.update_stream(&config).await.unwrap();

    let store = builder(&url, "nodirect").bucket(first.bucket()).connect().await.unwrap();
    assert!(format!("{store:?}").contains("batched_get: false"), "{store:?}");
    let bucket = js.get_key_value(store.bucket()).await.unwrap();
    let (names, want) = mixed_entries(&store, &bucket, "").await;
    assert_reads(&store, &names, &want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_state_of_more_names_than_one_request_takes() {
    let Some(url) = url().await else { return };
    let store = builder(&url, "chunks").connect().await.unwrap();
    // 2500 names: more than the 1024 one answer may hold, and 300 of them
    // long enough (about 3 KB mapped) that the request bodies outgrow 1 MiB.
    let names: Vec<String> = (0..2500)
        .map(|i| if i % 25 == 0 { format!("long:{i}:{}", "ß".repeat(500)) } else { format!("k.{i}") })
        .chain((0..300).map(|i| format!("l:{i}:{}", ":".repeat(990))))
        .collect();
    let written: Vec<&String> =
        names.iter().enumerate().filter(|(i, _)| i % 5 != 0).map(|(_, n)| n).collect();
    for group in written.chunks(200) {
        let puts = group.iter().map(|n| store.set_state(n, Json::encode(&n.len()).unwrap()));
        for r in futures_util::future::join_all(puts).await {
            r.unwrap();
        }
    }
    let mut asked: Vec<&str> = names.iter().map(String::as_str).collect();
    asked.extend(names.iter().take(50).map(String::as_str)); // repeats
    let started = Instant::now();
    let state = store.get_state(&asked).await.unwrap();
    eprintln!("get_state of {} names: {:?}", asked.len(), started.elapsed());
    assert_eq!(state.len(), names.len());
    for (i, n) in names.iter().enumerate() {
        let want = (i % 5 != 0).then(|| Json::encode(&n.len()).unwrap());
        assert_eq!(state[n.as_str()], want, "{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_state_is_one_point_in_time() {
    let Some(url) = url().await else { return };
    let store = builder(&url, "snapshot").connect().await.unwrap();
    // The writer sets `a` then `b` to each next number: at any one point in
    // time `a` is `b` or one ahead. Key-by-key reads tear now and then.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 1u64.. {
                store.set("a", &i).await.unwrap();
                store.set("b", &i).await.unwrap();
            }
        })
    };
    let started = Instant::now();
    let mut reads = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let state = store.get_state(&["b", "a"]).await.unwrap();
        let n = |k: &str| state[k].as_ref().map_or(0, |j| j.decode::<u64>().unwrap());
        let (a, b) = (n("a"), n("b"));
        assert!(a == b || a == b + 1, "torn read: a = {a}, b = {b}");
        reads += 1;
    }
    writer.abort();
    eprintln!("{reads} consistent reads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_state_with_the_server_gone_is_bounded() {
    let Some(mut server) = NatsServer::new("gone").jetstream().start().await else { return };
    let options = async_nats::ConnectOptions::new().request_timeout(Some(Duration::from_millis(500)));
    let store = builder(&server.url(), "gone").connect_options(options).connect().await.unwrap();
    assert!(format!("{store:?}").contains("batched_get: true"), "{store:?}");
    store.set("k", &1).await.unwrap();
    server.kill();
    let started = Instant::now();
    let err = store.get_state(&["k", "j"]).await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Timeout | ErrorKind::Unavailable), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "bounded: {:?}", started.elapsed());
}

/// A real mirror of the bucket, in the stream's direct-get queue group
/// (`mirror_direct`, as async-nats and nats.go make KV mirrors), that reads
/// like one that has not caught up, whatever the timing: it takes only the
/// origin's `old` key and holds it as `a`, and has no `b`.
async fn lagging_mirror(url: &str, bucket: &str) {
    use async_nats::jetstream::stream::{Config, Source, StorageType, SubjectTransform};
    let js = raw(url).await;
    let config = Config {
        name: format!("KV_{bucket}_mirror"),
        storage: StorageType::Memory,
        mirror: Some(Source {
            name: format!("KV_{bucket}"),
            subject_transforms: vec![SubjectTransform {
                source: format!("$KV.{bucket}.old"),
                destination: format!("$KV.{bucket}.a"),
            }],
            ..Default::default()
        }),
        mirror_direct: true,
        allow_direct: true,
        ..Default::default()
    };
    let mut mirror = js.create_stream(config).await.expect("create the mirror");
    // It joins the direct-get queue group once it has caught up.
    let deadline = Instant::now() + Duration::from_secs(10);
    while mirror.info().await.unwrap().state.messages < 1 {
        assert!(Instant::now() < deadline, "the mirror never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// On a one-replica bucket reads stay direct gets, but only the stream's own
/// answers count: a mirror in the direct-get queue group that has not caught
/// up, and a miss, are asked again at the stream leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_mirror_does_not_answer_reads_on_one_replica() {
    let Some(url) = url().await else { return };
    let store = builder(&url, "mirrored").connect().await.unwrap();
    assert!(format!("{store:?}").contains("reads: SingleReplica"), "{store:?}");
    store.set("old", &1).await.unwrap();
    store.set("a", &2).await.unwrap();
    store.set("b", &2).await.unwrap();
    lagging_mirror(&url, store.bucket()).await;
    let two = Some(Json::encode(&2).unwrap());
    for i in 0..32 {
        assert_eq!(store.get_value("a").await.unwrap(), two, "get a, read {i}");
        assert_eq!(store.get_value("b").await.unwrap(), two, "get b, read {i}");
        let entry = store.get_entry("a").await.unwrap().unwrap();
        assert_eq!(Some(entry.value), two, "get_entry a, read {i}");
        let state = store.get_state(&["a", "b"]).await.unwrap();
        assert_eq!((&state["a"], &state["b"]), (&two, &two), "get_state, read {i}");
    }
    // Replica reads take whatever answers: the mirror's older value too
    // (the server gives each request to one member of the queue group).
    let replica =
        builder(&url, "mirrored").bucket(store.bucket()).replica_reads(true).connect().await.unwrap();
    assert!(format!("{replica:?}").contains("reads: Replicas"), "{replica:?}");
    let mut stale = 0;
    for _ in 0..32 {
        if replica.get_value("a").await.unwrap() != two {
            stale += 1;
        }
    }
    eprintln!("replica reads: {stale} of 32 answered by the mirror");
    assert!(stale > 0, "with replica reads the mirror's answers count");
}
