//! What is specific to the NATS store: the key mapping on a real server,
//! interop with raw async-nats, bucket handling, capabilities and errors.

mod support_nats;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use integration_tests::fixtures::NatsServer;
use purista_core::{ErrorKind, Json, Op, PutOptions, StateStore, StateStoreExt, WatchKind, testkit::unique};
use purista_nats_state_store::{NO_JETSTREAM, NatsStateStore, RemoveMode, key};
use support_nats::{builder, raw, url};

/// The keys NATS cannot hold as they are, plus a few it can.
const EDGE: [&str; 14] =
    ["session:abc", "a b", "ключ", "🔑", "..", ".", "a.", ".a", "a..b", "*", ">", "a.*", "a=b", "user.42"];

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
    assert!(store.ttl_unsupported_reason().unwrap().contains("per-message TTL"));
    assert!(store.transactions_unsupported_reason().unwrap().contains("atomic"));
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

/// One answer frame of the fake responder: header block (status line
/// included) and payload.
type Frame = (Option<String>, String);

/// A direct-get responder that answers from a script, speaking the raw NATS
/// protocol (async-nats cannot send status lines): each request takes the next
/// list of frames. Returns the request bodies it saw.
async fn scripted_direct_get(
    url: &str,
    subject: &str,
    script: Vec<Vec<Frame>>,
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let addr = url.trim_start_matches("nats://");
    let (read, mut write) = tokio::net::TcpStream::connect(addr).await.unwrap().into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    read.read_line(&mut line).await.unwrap(); // INFO
    let hello = format!(
        "CONNECT {{\"verbose\":false,\"headers\":true,\"protocol\":1}}\r\nSUB {subject} 1\r\nPING\r\n"
    );
    write.write_all(hello.as_bytes()).await.unwrap();
    while line.trim() != "PONG" {
        line.clear();
        assert!(read.read_line(&mut line).await.unwrap() > 0, "fake responder: connection closed");
    }
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let requests = seen.clone();
    tokio::spawn(async move {
        let mut script = script.into_iter();
        loop {
            line.clear();
            if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let parts: Vec<String> = line.split_whitespace().map(String::from).collect();
            let (reply, len) = match parts.first().map(String::as_str) {
                Some("PING") => {
                    write.write_all(b"PONG\r\n").await.unwrap();
                    continue;
                }
                // MSG <subject> <sid> <reply> <len>, HMSG ... <header len> <total len>
                Some("MSG" | "HMSG") if parts.len() >= 5 => {
                    (parts[3].clone(), parts.last().unwrap().parse().unwrap())
                }
                _ => continue,
            };
            let mut body = vec![0; len + 2];
            read.read_exact(&mut body).await.unwrap();
            requests.lock().unwrap().push(String::from_utf8_lossy(&body[..len]).into_owned());
            for (headers, payload) in script.next().unwrap_or_default() {
                let frame = match headers {
                    Some(h) => {
                        format!("HPUB {reply} {} {}\r\n{h}{payload}\r\n", h.len(), h.len() + payload.len())
                    }
                    None => format!("PUB {reply} {}\r\n{payload}\r\n", payload.len()),
                };
                write.write_all(frame.as_bytes()).await.unwrap();
            }
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_get_is_bounded_and_typed_on_odd_answers() {
    let Some(url) = url().await else { return };
    let options = async_nats::ConnectOptions::new().request_timeout(Some(Duration::from_millis(500)));
    let store = builder(&url, "odd").connect_options(options).connect().await.unwrap();
    assert!(format!("{store:?}").contains("batched_get: true"), "{store:?}");
    let name = store.bucket().to_owned();
    // The server stops answering direct gets; the store still sends them.
    let js = raw(&url).await;
    let stream = js.get_stream(format!("KV_{name}")).await.unwrap();
    let mut config = stream.cached_info().config.clone();
    config.allow_direct = false;
    js.update_stream(&config).await.unwrap();
    let err = store.get_state(&["k1"]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "no responders: {err}");

    let data = |key: &str, extra: &str, payload: &str| -> Frame {
        let h = format!(
            "NATS/1.0\r\nNats-Stream: KV_{name}\r\nNats-Subject: $KV.{name}.{key}\r\nNats-Sequence: 7\r\n\
             Nats-Time-Stamp: 2025-01-01T00:00:00Z\r\n{extra}\r\n"
        );
        (Some(h), payload.to_owned())
    };
    let status = |line: &str, headers: &str| -> Frame {
        (Some(format!("NATS/1.0 {line}\r\n{headers}\r\n")), String::new())
    };
    let eob = |pending: u32| status("204 EOB", &format!("Nats-Num-Pending: {pending}\r\n"));
    let script = vec![
        vec![],                             // silence
        vec![data("k1", "", "1")],          // stops half way
        vec![(None, "garbage".to_owned())], // no headers at all
        // An unreadable time stamp.
        vec![(
            Some("NATS/1.0\r\nNats-Subject: x\r\nNats-Sequence: 1\r\nNats-Time-Stamp: soon\r\n\r\n".into()),
            "1".into(),
        )],
        vec![status("413 Too Many Results", "")],
        vec![status("204 EOB", "")],       // no Nats-Num-Pending
        vec![eob(3)],                      // cut, but nothing sent
        vec![data("k1", "", "1"), eob(1)], // cut after k1 ...
        vec![data("k2", "", "2"), eob(0)], // ... the rest asked again
        vec![status("404 No Results", "")],
        vec![data("other", "", "9"), data("k1", "KV-Operation: DEL\r\n", ""), eob(0)],
    ];
    let requests = scripted_direct_get(&url, &format!("$JS.API.DIRECT.GET.KV_{name}"), script).await;

    let kind = |r: purista_core::Result<purista_core::StateMap>| {
        let err = r.map(drop).unwrap_err();
        eprintln!("{err}");
        err.kind()
    };
    for want in [ErrorKind::Timeout, ErrorKind::Timeout] {
        let started = Instant::now();
        assert_eq!(kind(store.get_state(&["k1", "k2"]).await), want);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "bounded by the request timeout: {:?}",
            started.elapsed()
        );
    }
    for _ in 0..5 {
        assert_eq!(kind(store.get_state(&["k1", "k2"]).await), ErrorKind::Backend);
    }
    let state = store.get_state(&["k1", "k2"]).await.unwrap();
    assert_eq!(state["k1"], Some(Json::encode(&1).unwrap()));
    assert_eq!(state["k2"], Some(Json::encode(&2).unwrap()));
    let second = requests.lock().unwrap()[8].clone();
    assert!(
        second.contains(&format!("$KV.{name}.k2")) && !second.contains(&format!("$KV.{name}.k1\"")),
        "{second}"
    );
    assert_eq!(store.get_state(&["k1"]).await.unwrap()["k1"], None, "404: no results");
    let state = store.get_state(&["k1"]).await.unwrap();
    assert_eq!(state.len(), 1);
    assert_eq!(state["k1"], None, "a delete marker; the unasked key is ignored");
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
