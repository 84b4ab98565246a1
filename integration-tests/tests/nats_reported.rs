//! The NATS store as users run it (issue 10): several instances starting at
//! once, ETags, TTLs and history, updating a bucket, listings on a stalling
//! server, foreign headers and keys, removing what is not there, handles
//! sharing one connection, and which key an error names.

mod support_nats;

use std::{sync::Arc, time::Duration};

use async_nats::{HeaderMap, jetstream::kv};
use futures_util::StreamExt;
use integration_tests::fixtures::NatsServer;
use purista_core::{Capability, ETag, ErrorKind, Json, Op, PutOptions, StateStore, StateStoreExt, WatchKind};
use purista_nats_state_store::{BucketSettings, NatsStateStore, Storage};
use support_nats::{builder, proxy::StallingProxy, raw, url};

/// The next watch event, waiting at most 10 s.
async fn next(watch: &mut purista_core::WatchStream) -> purista_core::WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("a watch event within 10 s")
        .expect("watch open")
        .expect("watch event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_at_once_share_a_fresh_bucket() {
    let Some(url) = url().await else { return };
    const INSTANCES: usize = 16;
    const BUCKETS: usize = 10;
    let mut failures = Vec::new();
    for _ in 0..BUCKETS {
        let name = support_nats::bucket("herd");
        let starts = (0..INSTANCES).map(|_| builder(&url, "herd").bucket(&name).connect());
        let stores = futures_util::future::join_all(starts).await;
        let mut up = Vec::new();
        for result in stores {
            match result {
                Ok(store) => up.push(store),
                Err(e) => failures.push(e.to_string()),
            }
        }
        // Every instance that came up has the full capabilities.
        for store in &up {
            let why = |capability| purista_core::backend::Backend::unsupported_reason(store, capability);
            if let Some(why) = why(Capability::Transactions).or(why(Capability::Ttl)) {
                failures.push(format!("came up without a capability: {why}"));
            }
            store.destroy().await.unwrap();
        }
    }
    eprintln!("{INSTANCES} instances x {BUCKETS} fresh buckets: {} failures", failures.len());
    assert!(failures.is_empty(), "{failures:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etag_zero_matches_nothing() {
    let Some(url) = url().await else { return };
    let store = builder(&url, "etag0").connect().await.unwrap();
    let bucket = raw(&url).await.get_key_value(store.bucket()).await.unwrap();
    let zero = ETag::new("0");
    let err = store.put("k", Json::encode(&1).unwrap(), PutOptions::update(zero.clone())).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "update(\"0\") on a missing key: {err}");
    let err = store.remove("k", Some(&zero)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "remove(\"0\") on a missing key: {err}");
    assert!(bucket.entry("k").await.unwrap().is_none(), "nothing written, not even a marker");
    // In a transaction too.
    let op = Op::put_with("k", Json::encode(&1).unwrap(), PutOptions::update(zero));
    assert_eq!(store.transaction(vec![op]).await.unwrap_err().kind(), ErrorKind::Conflict);
    assert!(bucket.entry("k").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_lives_until_the_server_expires_it() {
    let Some(url) = url().await else { return };
    let store = builder(&url, "expiry").connect().await.unwrap();
    let mut watch = store.watch("t").await.unwrap();
    store
        .put("t", Json::encode(&1).unwrap(), PutOptions::default().ttl(Duration::from_secs(2)))
        .await
        .unwrap();
    assert!(matches!(next(&mut watch).await.kind, WatchKind::Set { .. }));
    let err = store.put("t", Json::encode(&2).unwrap(), PutOptions::create()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "live on the server: create-only refused");
    // Once the server says it expired, it is gone and can be created again.
    assert_eq!(next(&mut watch).await.kind, WatchKind::Expired);
    assert_eq!(store.get::<i32>("t").await.unwrap(), None);
    store.put("t", Json::encode(&3).unwrap(), PutOptions::create()).await.unwrap();
    assert_eq!(store.get::<i32>("t").await.unwrap(), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_on_a_bucket_with_history_brings_no_old_revision_back() {
    let Some(url) = url().await else { return };
    let settings = BucketSettings {
        history: 5,
        storage: Storage::Memory,
        ttl_markers: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let store = builder(&url, "history-ttl").bucket_settings(settings).connect().await.unwrap();
    let mut watch = store.watch("k").await.unwrap();
    store.set("k", &1).await.unwrap();
    store
        .put("k", Json::encode(&2).unwrap(), PutOptions::default().ttl(Duration::from_secs(1)))
        .await
        .unwrap();
    assert!(matches!(next(&mut watch).await.kind, WatchKind::Set { .. }));
    assert!(matches!(next(&mut watch).await.kind, WatchKind::Set { .. }));
    assert_eq!(next(&mut watch).await.kind, WatchKind::Expired, "the server reports the expiry");
    assert_eq!(store.get::<i32>("k").await.unwrap(), None, "the older revision stays gone");
    assert_eq!(store.list_keys("k").await.unwrap(), Vec::<String>::new());
    // Rollups are not allowed in atomic batches: a TTL there is refused, whole.
    let op = Op::put_with("k", Json::encode(&3).unwrap(), PutOptions::default().ttl(Duration::from_secs(5)));
    assert_eq!(store.transaction(vec![op]).await.unwrap_err().kind(), ErrorKind::Unsupported);

    // With 60 s markers the server raises a 1 s TTL to 60 s on such a bucket:
    // refused rather than kept silently longer.
    let store = builder(&url, "history-ttl").history(5).connect().await.unwrap();
    let put = store.put("k", Json::encode(&1).unwrap(), PutOptions::default().ttl(Duration::from_secs(1)));
    let err = put.await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert_eq!(store.get::<i32>("k").await.unwrap(), None, "nothing written");
    store
        .put("k", Json::encode(&1).unwrap(), PutOptions::default().ttl(Duration::from_secs(60)))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updating_an_existing_bucket_keeps_what_it_does_not_change() {
    let Some(url) = url().await else { return };
    let js = raw(&url).await;
    let name = support_nats::bucket("keep");
    let config = kv::Config {
        bucket: name.clone(),
        history: 3,
        max_value_size: 4096,
        storage: async_nats::jetstream::stream::StorageType::Memory,
        ..Default::default()
    };
    js.create_key_value(config).await.unwrap();
    let stream_config = |js: async_nats::jetstream::Context, name: String| async move {
        js.get_stream(format!("KV_{name}")).await.unwrap().cached_info().config.clone()
    };
    let store = NatsStateStore::builder().server(&url).bucket(&name).update_existing_bucket(true).connect();
    let store = store.await.unwrap();
    assert!(store.capabilities().ttl.is_some() && store.capabilities().transactions);
    let config = stream_config(js.clone(), name.clone()).await;
    assert_eq!(config.max_messages_per_subject, 3, "history kept");
    assert_eq!(config.max_message_size, 4096, "value size kept");
    assert_eq!(config.num_replicas, 1);
    // What the builder chose is applied.
    let store = NatsStateStore::builder().server(&url).bucket(&name).history(7).update_existing_bucket(true);
    store.connect().await.unwrap();
    let config = stream_config(js, name).await;
    assert_eq!((config.max_messages_per_subject, config.max_message_size), (7, 4096));
}

/// Writes `n` keys `l:<i>`.
async fn fill(store: &NatsStateStore, n: usize) {
    for group in (0..n).collect::<Vec<_>>().chunks(250) {
        let puts = group.iter().map(|i| async move {
            let key = format!("l:{i}");
            store.set_state(&key, Json::encode(i).unwrap()).await
        });
        for r in futures_util::future::join_all(puts).await {
            r.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_waits_out_a_stall_and_never_returns_part() {
    let Some(url) = url().await else { return };
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    const KEYS: usize = 3000;
    let name = support_nats::bucket("stall");
    fill(&builder(&url, "stall").bucket(&name).connect().await.unwrap(), KEYS).await;

    // The server goes quiet for 3 s part way through the listing: shorter
    // than the request timeout (10 s), so the listing waits and is whole.
    let proxy = StallingProxy::start(port, b"$JS.ACK.", 500, Duration::from_secs(3)).await;
    let store = builder(&proxy.url(), "stall").bucket(&name).connect().await.unwrap();
    let keys = store.list_keys("l:").await.unwrap();
    assert!(proxy.seen() >= 500, "the stall happened during the listing");
    assert_eq!(keys.len(), KEYS, "the whole listing, not what came before the stall");

    // Longer than the request timeout: a Timeout error, not a partial list.
    let proxy = StallingProxy::start(port, b"$JS.ACK.", 500, Duration::from_secs(4)).await;
    let options = async_nats::ConnectOptions::new().request_timeout(Some(Duration::from_secs(1)));
    let store =
        builder(&proxy.url(), "stall").bucket(&name).connect_options(options).connect().await.unwrap();
    let listed = store.list_keys("l:").await;
    assert_eq!(listed.map(|k| k.len()).unwrap_err().kind(), ErrorKind::Timeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_ttl_past_any_clock_does_not_panic_readers() {
    let Some(url) = url().await else { return };
    let store = builder(&url, "huge-ttl").connect().await.unwrap();
    let js = raw(&url).await;
    // The server takes these (and expires them at once: its own arithmetic
    // overflows); a reader that sees one first must not panic either.
    for (i, ttl) in ["9223372036854775807", "2562047h", "9999999999"].iter().enumerate() {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-TTL", *ttl);
        let subject = format!("$KV.{}.h{i}", store.bucket());
        js.publish_with_headers(subject, headers, "1".into()).await.unwrap().await.unwrap();
        let key = format!("h{i}");
        let got = store.get::<i32>(&key).await.unwrap();
        assert!(matches!(got, None | Some(1)), "{got:?}");
        store.get_entry(&key).await.unwrap();
        store.get_state(&[key.as_str()]).await.unwrap();
        store.list_keys("h").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_key_that_is_not_there_writes_nothing() {
    let Some(url) = url().await else { return };
    let store = builder(&url, "remove-nothing").connect().await.unwrap();
    let bucket = raw(&url).await.get_key_value(store.bucket()).await.unwrap();
    let mut watch = store.watch("r:").await.unwrap();
    store.remove_state("r:never").await.unwrap();
    store.set("r:once", &1).await.unwrap();
    store.remove_state("r:once").await.unwrap();
    let stream = raw(&url).await.get_stream(format!("KV_{}", store.bucket())).await.unwrap();
    let subject = format!("$KV.{}.r=3Aonce", store.bucket());
    let marker = stream.direct_get_last_for_subject(&subject).await.unwrap().sequence;
    store.remove_state("r:once").await.unwrap(); // already removed
    store.set("r:end", &1).await.unwrap();
    let mut events = Vec::new();
    for _ in 0..3 {
        let event = next(&mut watch).await;
        let kind = if matches!(event.kind, WatchKind::Set { .. }) { "set" } else { "other" };
        events.push((event.key, kind, event.kind));
    }
    let seen: Vec<(&str, &str)> = events.iter().map(|(k, kind, _)| (k.as_str(), *kind)).collect();
    assert_eq!(seen, [("r:once", "set"), ("r:once", "other"), ("r:end", "set")], "{events:?}");
    assert_eq!(events[1].2, WatchKind::Removed, "one Removed, for the key that had a value");
    assert!(bucket.entry("r=3Anever").await.unwrap().is_none(), "no marker for a key never set");
    let last = stream.direct_get_last_for_subject(&subject).await.unwrap().sequence;
    assert_eq!(last, marker, "one marker: the second remove wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroying_one_handle_leaves_the_others_working() {
    let Some(url) = url().await else { return };
    let store = Arc::new(builder(&url, "handles").connect().await.unwrap());
    let client = store.client().clone();
    let a = store.clone().scoped("a");
    let b = store.clone().scoped("b");
    a.set("k", &1).await.unwrap();
    a.destroy().await.unwrap();
    a.destroy().await.unwrap(); // twice is once
    b.set("k", &2).await.unwrap();
    assert_eq!(b.get::<i32>("k").await.unwrap(), Some(2), "the other handle still works");
    // The connection closes with the last handle.
    b.destroy().await.unwrap();
    client.flush().await.expect("still open while a handle is left");
    store.destroy().await.unwrap();
    // Draining finishes in the background: wait for it (bounded).
    let mut closed = false;
    for _ in 0..50 {
        if store.get::<i32>("k").await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed, "closed with the last handle ({:?})", client.connection_state());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_keys_with_equals_follow_the_stated_rule() {
    let Some(url) = url().await else { return };
    let store = builder(&url, "foreign-eq").connect().await.unwrap();
    let bucket = raw(&url).await.get_key_value(store.bucket()).await.unwrap();
    // `=` is the mapping's escape: a foreign `x=3Ay` is the store's `x:y`;
    // `=` that is no canonical escape (`a=b`, lower-case `x=3ay`) is skipped.
    for (nats, value) in [("x=3Ay", "1"), ("x=3ay", "2"), ("xa=b", "3"), ("x.plain", "4")] {
        bucket.put(nats, value.into()).await.unwrap();
    }
    let listed = store.list_keys("x").await.unwrap();
    assert_eq!(listed, vec!["x.plain".to_string(), "x:y".to_string()]);
    // Every listed name reads the value under the NATS key it was listed from.
    for (name, want) in listed.iter().zip([4, 1]) {
        assert_eq!(store.get::<i32>(name).await.unwrap(), Some(want), "{name}");
    }
    // The store's own `x=3Ay` is another key, escaped.
    store.set("x=3Ay", &5).await.unwrap();
    assert_eq!(&bucket.get("x=3D3Ay").await.unwrap().unwrap()[..], b"5");
    assert_eq!(store.get::<i32>("x:y").await.unwrap(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_errors_name_the_callers_key() {
    let Some(mut server) = NatsServer::new("read-errors").jetstream().start().await else { return };
    let options = async_nats::ConnectOptions::new().request_timeout(Some(Duration::from_millis(500)));
    let store = builder(&server.url(), "read-errors").connect_options(options).connect().await.unwrap();
    store.set("session:abc", &1).await.unwrap();
    server.kill();
    let err = store.get::<i32>("session:abc").await.unwrap_err();
    assert_eq!(err.key(), Some("session:abc"), "{err:?}");
    let err = store.get_entry("session:abc").await.unwrap_err();
    assert_eq!(err.key(), Some("session:abc"), "{err:?}");
    let err = store.remove_state("session:abc").await.unwrap_err();
    assert_eq!(err.key(), Some("session:abc"), "{err:?}");
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("session=3Aabc"), "no encoded key: {text}");
    }
}
