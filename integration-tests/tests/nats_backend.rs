//! What is specific to the NATS store: the key mapping on a real server,
//! interop with raw async-nats, bucket handling, capabilities and errors.
//! (Batched reads are in `nats_get_state.rs` and `nats_direct_get.rs`.)

mod support_nats;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use integration_tests::fixtures::NatsServer;
use purista_core::{ErrorKind, Json, Op, PutOptions, StateStore, WatchKind, testkit::unique};
use purista_nats_state_store::{NO_JETSTREAM, NatsStateStore, RemoveMode, key};
use support_nats::{EDGE, builder, raw, url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_plain_json_under_the_mapped_key() {
    let Some(url) = url().await else { return };
    let store = builder(&url, "interop").connect().await.unwrap();
    let js = raw(&url).await;
    let bucket = js.get_key_value(store.bucket()).await.unwrap();

    let doc: BTreeMap<String, i64> = [("n".to_string(), 1), ("m".to_string(), 2)].into();
    store.set("session:abc", &doc).await.unwrap();
    store.set("user.42", &"plain").await.unwrap();
    let got = bucket.get("session=3Aabc").await.unwrap().expect("under the mapped key");
    assert_eq!(&got[..], br#"{"m":2,"n":1}"#, "the plain JSON bytes");
    assert_eq!(&bucket.get("user.42").await.unwrap().unwrap()[..], b"\"plain\"", "NATS-valid key unchanged");

    // What another client (a PURISTA TypeScript service) writes, the store reads.
    bucket.put("orders.7", r#"{"total":12}"#.into()).await.unwrap();
    let want: BTreeMap<String, i64> = [("total".to_string(), 12)].into();
    assert_eq!(store.get::<BTreeMap<String, i64>>("orders.7").await.unwrap(), Some(want));
    // ... and its delete is a delete for the store too.
    bucket.delete("orders.7").await.unwrap();
    assert_eq!(store.get::<BTreeMap<String, i64>>("orders.7").await.unwrap(), None);

    // The ETag is the revision raw clients see.
    let entry = store.get_entry("user.42").await.unwrap().unwrap();
    let raw_entry = bucket.entry("user.42").await.unwrap().unwrap();
    assert_eq!(entry.etag.as_str(), raw_entry.revision.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_keys_round_trip_list_and_watch() {
    let Some(url) = url().await else { return };
    let store = builder(&url, "edge").connect().await.unwrap();
    let js = raw(&url).await;
    let bucket = js.get_key_value(store.bucket()).await.unwrap();
    let p = "p.";
    let mut watch = store.watch(&format!("{p}a")).await.unwrap();

    for (i, k) in EDGE.iter().enumerate() {
        let full = format!("{p}{k}");
        store.set(&full, &i).await.unwrap();
        // Stored under exactly the documented encoding.
        let raw_value = bucket.get(key::encode(&full)).await.unwrap();
        assert_eq!(raw_value.as_deref(), Some(i.to_string().as_bytes()), "{full:?}");
    }
    for (i, k) in EDGE.iter().enumerate() {
        assert_eq!(store.get::<usize>(&format!("{p}{k}")).await.unwrap(), Some(i), "{k:?}");
    }
    let mut all: Vec<String> = EDGE.iter().map(|k| format!("{p}{k}")).collect();
    all.sort();
    assert_eq!(store.list_keys(p).await.unwrap(), all);
    // Prefixes ending mid-token and at a dot.
    let with = |pre: &str| {
        let mut v: Vec<String> = all.iter().filter(|k| k.starts_with(pre)).cloned().collect();
        v.sort();
        v
    };
    for pre in ["p.a", "p.a.", "p.a.*", "p..", "p.", "p.*", "p.>", "p.s", "p.ключ", "p.a="] {
        assert_eq!(store.list_keys(pre).await.unwrap(), with(pre), "prefix {pre:?}");
    }
    // The watch on `p.a` saw the keys starting with it, in order, and nothing else.
    let mut seen = Vec::new();
    let want = EDGE.iter().filter(|k| k.starts_with('a')).count();
    while seen.len() < want {
        let event =
            tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap().unwrap().unwrap();
        assert!(matches!(event.kind, WatchKind::Set { .. }));
        seen.push(event.key);
    }
    let expected: Vec<String> =
        EDGE.iter().filter(|k| k.starts_with('a')).map(|k| format!("{p}{k}")).collect();
    assert_eq!(seen, expected);
    assert!(tokio::time::timeout(Duration::from_millis(300), watch.next()).await.is_err(), "nothing more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_is_a_nats_ttl_header_and_expiry_is_reported() {
    let Some(url) = url().await else { return };
    let store = builder(&url, "ttl").connect().await.unwrap();
    assert_eq!(store.capabilities().ttl, Some(Duration::from_secs(1)));
    let js = raw(&url).await;
    let stream = js.get_stream(format!("KV_{}", store.bucket())).await.unwrap();
    // 1.2 s rounds up to 2 s.
    store
        .put("t", Json::encode(&1).unwrap(), PutOptions::default().ttl(Duration::from_millis(1200)))
        .await
        .unwrap();
    let msg = stream.direct_get_last_for_subject(format!("$KV.{}.t", store.bucket())).await.unwrap();
    assert_eq!(msg.headers.get("Nats-TTL").map(|v| v.as_str()), Some("2"));
    // An upsert over an existing key with a TTL works too (not only create).
    let mut watch = store.watch("t").await.unwrap();
    store
        .put("t", Json::encode(&2).unwrap(), PutOptions::default().ttl(Duration::from_secs(1)))
        .await
        .unwrap();
    let started = Instant::now();
    let set = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(set.kind, WatchKind::Set { .. }));
    let expired = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(expired.kind, WatchKind::Expired);
    eprintln!("1 s TTL reported expired after {:?}", started.elapsed());
    assert_eq!(store.get::<i32>("t").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_modes() {
    let Some(url) = url().await else { return };
    let js = raw(&url).await;
    for (mode, op) in [(RemoveMode::Delete, kv::Operation::Delete), (RemoveMode::Purge, kv::Operation::Purge)]
    {
        let store = builder(&url, "remove").history(5).remove_mode(mode).connect().await.unwrap();
        let bucket = js.get_key_value(store.bucket()).await.unwrap();
        store.set("k", &1).await.unwrap();
        store.set("k", &2).await.unwrap();
        store.remove_state("k").await.unwrap();
        assert_eq!(store.get::<i32>("k").await.unwrap(), None);
        let entry = bucket.entry("k").await.unwrap().unwrap();
        assert_eq!(entry.operation, op, "{mode:?}");
        let history: Vec<_> = bucket.history("k").await.unwrap().collect().await;
        let expected_len = if mode == RemoveMode::Purge { 1 } else { 3 };
        assert_eq!(history.len(), expected_len, "{mode:?} history");
        // A removed key can be created again.
        store.put("k", Json::encode(&3).unwrap(), PutOptions::create()).await.unwrap();
        assert_eq!(store.get::<i32>("k").await.unwrap(), Some(3));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_is_one_atomic_batch() {
    let Some(url) = url().await else { return };
    let store = builder(&url, "tx").connect().await.unwrap();
    assert!(store.capabilities().transactions);
    store.set("a", &1).await.unwrap();
    let etag = store.get_entry("a").await.unwrap().unwrap().etag;
    store.set("a", &2).await.unwrap(); // the ETag is now stale
    let ops = vec![
        Op::put("b", Json::encode(&"b").unwrap()),
        Op::put_with("a", Json::encode(&3).unwrap(), PutOptions::update(etag)),
        Op::put("c", Json::encode(&"c").unwrap()),
    ];
    let err = store.transaction(ops).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.key(), Some("a"), "the conflict names its key");
    assert!(std::error::Error::source(&err).is_some(), "cause kept");
    assert_eq!(store.get_state(&["a", "b", "c"]).await.unwrap()["b"], None, "nothing applied");
    let js = raw(&url).await;
    let stream = js.get_stream(format!("KV_{}", store.bucket())).await.unwrap();
    assert!(stream.cached_info().config.allow_atomic_publish, "bucket created with atomic publish");

    // A good batch applies whole, TTLs and removes included.
    let ops = vec![
        Op::put_with("b", Json::encode(&"b").unwrap(), PutOptions::create().ttl(Duration::from_secs(30))),
        Op::remove("a"),
        Op::put("c", Json::encode(&"c").unwrap()),
    ];
    store.transaction(ops).await.unwrap();
    let state = store.get_state(&["a", "b", "c"]).await.unwrap();
    assert_eq!((state["a"].is_none(), state["b"].is_some(), state["c"].is_some()), (true, true, true));
    let expires = store.get_entry("b").await.unwrap().unwrap().expires_at.expect("ttl inside a batch");
    let left = expires.duration_since(std::time::SystemTime::now()).unwrap();
    assert!(left > Duration::from_secs(25) && left <= Duration::from_secs(30), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_bucket_is_used_as_it_is() {
    let Some(url) = url().await else { return };
    let js = raw(&url).await;
    let name = support_nats::bucket("plain");
    js.create_key_value(kv::Config { bucket: name.clone(), history: 3, ..Default::default() }).await.unwrap();
    let store = NatsStateStore::builder().server(&url).bucket(&name).connect().await.unwrap();
    let caps = store.capabilities();
    assert_eq!(caps.ttl, None);
    assert!(!caps.transactions);
    let why = |capability| purista_core::backend::Backend::unsupported_reason(&store, capability).unwrap();
    assert!(why(purista_core::Capability::Ttl).contains("per-message TTL"));
    assert!(why(purista_core::Capability::Transactions).contains("atomic"));
    let err =
        store.put("k", Json::encode(&1).unwrap(), PutOptions::default().ttl(Duration::from_secs(5))).await;
    let err = err.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("per-message TTL"), "the error says why: {err}");
    let err = store.transaction(vec![Op::put("k", Json::encode(&1).unwrap())]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("atomic"), "the error says why: {err}");
    // Everything else works, and the bucket was not changed.
    store.set("k", &1).await.unwrap();
    assert_eq!(store.get::<i32>("k").await.unwrap(), Some(1));
    let info = js.get_stream(format!("KV_{name}")).await.unwrap();
    assert_eq!(info.cached_info().config.max_messages_per_subject, 3);
    assert!(!info.cached_info().config.allow_message_ttl);

    // Asked to, the store brings the bucket to its settings.
    let store =
        NatsStateStore::builder().server(&url).bucket(&name).update_existing_bucket(true).connect().await;
    let store = store.unwrap();
    assert!(store.capabilities().ttl.is_some() && store.capabilities().transactions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_jetstream_is_purista_error() {
    let Some(server) = NatsServer::new("nojs").start().await else { return };
    let err = NatsStateStore::connect(server.url()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(err.message(), NO_JETSTREAM);
    assert_eq!(err.status(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_leak() {
    let Some(server) = NatsServer::new("auth").jetstream().user("ada", "s3cr3t-pw").start().await else {
        return;
    };
    let store = NatsStateStore::builder()
        .server(server.url())
        .user_and_password("ada", "s3cr3t-pw")
        .bucket("auth")
        .connect()
        .await
        .unwrap();
    store.set("k", &1).await.unwrap();
    assert!(!format!("{store:?}").contains("s3cr3t"));
    let err = NatsStateStore::builder()
        .server(server.url())
        .user_and_password("ada", "wrong-s3cr3t")
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("s3cr3t"), "{text}");
    }
    // Token authentication, and a wrong token.
    let Some(server) = NatsServer::new("token").jetstream().token("t0ken-s3cr3t").start().await else {
        return;
    };
    let store = NatsStateStore::builder().server(server.url()).token("t0ken-s3cr3t").connect().await.unwrap();
    store.set("k", &2).await.unwrap();
    let err = NatsStateStore::builder().server(server.url()).token("bad-s3cr3t").connect().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(!format!("{err} {err:?} {store:?}").contains("s3cr3t"), "{err:?}");
    // A password in the URL stays out of errors too.
    let url = format!("nats://ada:url-s3cr3t@127.0.0.1:{}", integration_tests::ports::free_port());
    let err = NatsStateStore::connect(url).await.unwrap_err();
    assert!(!format!("{err} {err:?}").contains("url-s3cr3t"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_keys_are_encoded_with_their_prefix() {
    let Some(url) = url().await else { return };
    let store = std::sync::Arc::new(builder(&url, "scope").connect().await.unwrap());
    let name = store.bucket().to_owned();
    let scoped = store.clone().scoped(&unique("svc:1"));
    scoped.set_state("cart:9", Json::encode(&9).unwrap()).await.unwrap();
    assert_eq!(scoped.list_keys("cart").await.unwrap(), vec!["cart:9".to_string()]);
    let js = raw(&url).await;
    let bucket = js.get_key_value(&name).await.unwrap();
    let keys: Vec<String> = bucket.keys().await.unwrap().map(|k| k.unwrap()).collect().await;
    assert_eq!(keys.len(), 1);
    assert!(keys[0].starts_with("svc=3A1") && keys[0].ends_with("cart=3A9"), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_too_long_once_mapped_are_refused_before_sending() {
    let Some(url) = url().await else { return };
    // A 200-byte prefix of `:` maps to 600 bytes; with 1024 bytes of `ß` (3072) that is too long.
    let config = purista_core::StoreConfig::default().key_prefix(":".repeat(200));
    let store = builder(&url, "long").store_config(config).connect().await.unwrap();
    let key = "ß".repeat(512);
    let err = store.set(&key, &1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidKey);
    assert_eq!(err.key(), Some(key.as_str()), "names the caller's key, prefix stripped");
    assert_eq!(store.get_state(&[&key]).await.unwrap_err().kind(), ErrorKind::InvalidKey);
    // The connection is fine: a key that fits still works.
    let fits = "ß".repeat(400);
    store.set(&fits, &2).await.unwrap();
    assert_eq!(store.get::<i32>(&fits).await.unwrap(), Some(2));
}

/// `invalidations` (a near cache's feed) asks the server for headers only:
/// another instance's large writes reach the follower as names, not values.
/// (Its gap probe may fetch one message whole if it asks while that write
/// is on its way: the bound leaves room for that, not for the values.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_carry_names_not_values() {
    let Some(url) = url().await else { return };
    let bucket = support_nats::bucket("names-only");
    let on_bucket = || {
        NatsStateStore::builder()
            .server(&url)
            .bucket(&bucket)
            .storage(purista_nats_state_store::Storage::Memory)
    };
    let follower = on_bucket().connect().await.unwrap();
    let writer = on_bucket().connect().await.unwrap();
    let p = format!("{}.", unique("inv"));
    let mut names = follower.invalidations(&p).await.unwrap();
    let big = "x".repeat(256 * 1024);
    let received = || follower.client().statistics().in_bytes.load(std::sync::atomic::Ordering::Relaxed);
    let before = received();
    for i in 0..5 {
        writer.set(&format!("{p}{i}"), &big).await.unwrap();
    }
    writer.remove_state(&format!("{p}0")).await.unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 6 {
        let event = tokio::time::timeout(Duration::from_secs(10), names.next())
            .await
            .expect("named within 10 s")
            .expect("stream open")
            .expect("no error");
        kinds.push((event.key, event.kind));
    }
    let got = received() - before;
    // (Not printed whole: a `Set` would hold 256 KiB.)
    let changed = kinds[..5].iter().filter(|(_, k)| *k == WatchKind::Changed).count();
    assert_eq!(changed, 5, "every write named as Changed, without its value");
    assert_eq!(kinds[5], (format!("{p}0"), WatchKind::Removed));
    assert!(got < 640 * 1024, "the follower received {got} bytes for 5 writes of 256 KiB");
    eprintln!("[nats_backend] 5 writes of 256 KiB reached the follower as {got} bytes");
    follower.destroy().await.unwrap();
    writer.destroy().await.unwrap();
}
