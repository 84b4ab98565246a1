//! ETags that change on every write (no ABA) while the value stays the plain
//! JSON string under its key: the version key beside each key, its TTL, its
//! hash slot, and what writes by other clients (a PURISTA TypeScript service,
//! redis-cli) do to an ETag. On standalone Redis and on a local Cluster.

mod support_redis;

use std::time::Duration;

use futures_util::StreamExt;
use integration_tests::fixtures::redis_topology::Cluster;
use purista_core::{
    ETag, ErrorKind, Json, Op, PutOptions, StateStore, StoreConfig, WatchKind, testkit::unique,
};
use purista_redis_state_store::{
    RedisStateStore,
    fred::{
        clients::Client,
        interfaces::{ClientLike, KeysInterface},
        prelude::Config,
        types::{CustomCommand, Value},
        util::redis_keyslot,
    },
};

/// What every version key starts with (the crate's stored format).
const VERSIONS: &str = "__purista_etag__:";

async fn raw_client(url: &str) -> Client {
    let client = Client::new(Config::from_url(url).expect("url"), None, None, None);
    client.init().await.expect("raw client connects");
    client
}

fn json(v: impl serde::Serialize) -> Json {
    Json::encode(&v).unwrap()
}

async fn etag(store: &RedisStateStore, key: &str) -> ETag {
    store.get_entry(key).await.unwrap().expect("entry").etag
}

/// The version keys of `key` on the server (`KEYS`: test servers only).
async fn version_keys(raw: &Client, key: &str) -> Vec<String> {
    let pattern = format!("{VERSIONS}{{*}}{key}");
    raw.custom(CustomCommand::new_static("KEYS", None, false), vec![pattern]).await.unwrap()
}

/// Write A, take its ETag, write B, write A again: the first ETag is stale,
/// through every write path (set_state's MSET, put's script, transactions).
async fn aba_is_a_conflict(store: &RedisStateStore, key: &str) {
    store.set(key, &"A").await.unwrap();
    let first = etag(store, key).await;
    store.set(key, &"B").await.unwrap();
    store.set(key, &"A").await.unwrap();
    let now = etag(store, key).await;
    assert_ne!(now, first, "writing A again gives a new ETag");
    let err = store.put(key, json("C"), PutOptions::update(first.clone())).await.unwrap_err();
    assert_eq!((err.kind(), err.key()), (ErrorKind::Conflict, Some(key)), "{err}");
    let err = store.remove(key, Some(&first)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let err = store
        .transaction(vec![Op::put_with(key, json("C"), PutOptions::update(first.clone()))])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);

    // Same bytes written through put and through a transaction: new ETags each time.
    let t1 = store.put(key, json("A"), PutOptions::default()).await.unwrap().unwrap();
    let t2 = store.put(key, json("A"), PutOptions::update(t1.clone())).await.unwrap().unwrap();
    assert_ne!(t1, t2, "a compare-and-swap to the same bytes gives a new ETag");
    assert_eq!(etag(store, key).await, t2, "put returns the ETag get_entry reports");
    store.transaction(vec![Op::put(key, json("A"))]).await.unwrap();
    let t3 = etag(store, key).await;
    assert!(t3 != t1 && t3 != t2, "a transaction's write gives a new ETag");
    let err = store.put(key, json("C"), PutOptions::update(t2)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    store.put(key, json("C"), PutOptions::update(t3)).await.expect("the current ETag");
    // Removed and written again with the same bytes: still a new ETag.
    let before = etag(store, key).await;
    store.remove_state(key).await.unwrap();
    store.set(key, &"C").await.unwrap();
    let err = store.remove(key, Some(&before)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aba_answers_conflict() {
    let Some(_) = integration_tests::fixtures::redis().await else { return };
    let store = support_redis::connect(StoreConfig::default()).await.expect("store");
    aba_is_a_conflict(&store, &unique("aba")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_writes_and_the_etag() {
    let Some(server) = integration_tests::fixtures::redis().await else { return };
    let store = support_redis::connect(StoreConfig::default()).await.expect("store");
    let raw = raw_client(server.url()).await;
    let key = unique("foreign");
    store.set(&key, &"A").await.unwrap();
    let first = etag(&store, &key).await;

    // Another client SETs new bytes: the version key stays, the hash changes.
    let _: () = raw.set(&key, "\"B\"", None, None, false).await.unwrap();
    let after_b = etag(&store, &key).await;
    assert_ne!(after_b, first, "a foreign SET of new bytes changes the ETag");
    let err = store.put(&key, json("C"), PutOptions::update(first.clone())).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);

    // Another client SETs the very bytes that were there: Redis cannot tell
    // this from no write at all, so the ETag stays (documented).
    let _: () = raw.set(&key, "\"B\"", None, None, false).await.unwrap();
    assert_eq!(etag(&store, &key).await, after_b, "a foreign SET of the same bytes keeps the ETag");
    // And back to the bytes of the first ETag by another client: the version
    // key still holds the version of this store's first write, so that
    // ETag matches again. Only writes by this store bump the version.
    let _: () = raw.set(&key, "\"A\"", None, None, false).await.unwrap();
    assert_eq!(etag(&store, &key).await, first, "foreign ABA is not visible");
    raw.quit().await.unwrap();
}

/// A value only ever written by plain `SET` (PURISTA TypeScript) has no
/// version key: its ETag is the bare SHA-1, a compare-and-swap with it works,
/// and the swap, even to the same bytes, makes that ETag stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_set_values_read_and_swap() {
    let Some(server) = integration_tests::fixtures::redis().await else { return };
    let store = support_redis::connect(StoreConfig::default()).await.expect("store");
    let raw = raw_client(server.url()).await;
    let key = unique("typescript");
    let text = r#"{"count":41}"#;
    let _: () = raw.set(&key, text, None, None, false).await.unwrap();
    assert!(version_keys(&raw, &key).await.is_empty());
    let entry = store.get_entry(&key).await.unwrap().expect("entry");
    assert_eq!(entry.value.as_str(), Some(text));
    assert_eq!(entry.etag.as_str().len(), 40, "bare SHA-1: {}", entry.etag);
    let swapped = store
        .put(
            &key,
            Json::from_bytes(text.as_bytes().to_vec()).unwrap(),
            PutOptions::update(entry.etag.clone()),
        )
        .await
        .expect("swap with the ETag get_entry gave")
        .unwrap();
    assert_ne!(swapped, entry.etag, "the swap gives a new ETag, though the bytes are the same");
    assert_eq!(raw.get::<Option<String>, _>(&key).await.unwrap().as_deref(), Some(text), "still plain JSON");
    let err = store.put(&key, json(1), PutOptions::update(entry.etag)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "the ETag from before the swap is stale");
    assert_eq!(version_keys(&raw, &key).await.len(), 1);
    raw.quit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_keys_share_ttl_and_removal() {
    let Some(server) = integration_tests::fixtures::redis().await else { return };
    let store = support_redis::connect(StoreConfig::default()).await.expect("store");
    let raw = raw_client(server.url()).await;
    let key = unique("ttl");
    let ttl = Duration::from_millis(300);
    store.put(&key, json(1), PutOptions::default().ttl(Duration::from_secs(60))).await.unwrap();
    let [version] = <[String; 1]>::try_from(version_keys(&raw, &key).await).expect("one version key");
    let (k, v): (i64, i64) = (raw.pttl(&key).await.unwrap(), raw.pttl(&version).await.unwrap());
    assert!(k > 50_000 && v > 50_000 && (k - v).abs() < 1_000, "same TTL: {k} / {v}");
    // A write without TTL clears both TTLs, through MSET and through the script.
    store.set(&key, &2).await.unwrap();
    assert_eq!(
        (raw.pttl::<i64, _>(&key).await.unwrap(), raw.pttl::<i64, _>(&version).await.unwrap()),
        (-1, -1)
    );
    store.put(&key, json(3), PutOptions::default().ttl(Duration::from_secs(60))).await.unwrap();
    store.put(&key, json(4), PutOptions::default()).await.unwrap();
    assert_eq!(
        (raw.pttl::<i64, _>(&key).await.unwrap(), raw.pttl::<i64, _>(&version).await.unwrap()),
        (-1, -1)
    );
    // Removal takes the version key along.
    store.remove_state(&key).await.unwrap();
    assert!(version_keys(&raw, &key).await.is_empty(), "removed with its key");
    // Expiry too: both have the same deadline.
    store.put(&key, json(5), PutOptions::default().ttl(ttl)).await.unwrap();
    assert_eq!(version_keys(&raw, &key).await.len(), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while raw.exists::<i64, _>(&key).await.unwrap() == 1 {
        assert!(tokio::time::Instant::now() < deadline, "the key never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(raw.exists::<i64, _>(&version).await.unwrap(), 0, "the version key expired with the key");
    assert!(store.get_entry(&key).await.unwrap().is_none());
    raw.quit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_keys_are_never_listed_and_reserved() {
    let Some(server) = integration_tests::fixtures::redis().await else { return };
    let store = support_redis::connect(StoreConfig::default()).await.expect("store");
    let raw = raw_client(server.url()).await;
    let key = unique("listed");
    store.set(&key, &1).await.unwrap();
    assert_eq!(version_keys(&raw, &key).await.len(), 1);
    let all = store.list_keys("").await.unwrap();
    assert!(all.contains(&key));
    assert!(!all.iter().any(|k| k.starts_with(VERSIONS)), "no version key listed");
    assert!(store.list_keys(VERSIONS).await.unwrap().is_empty());
    // Keys in the reserved range are refused, naming the key.
    let reserved = format!("{VERSIONS}{{x}}{key}");
    for err in [
        store.set(&reserved, &1).await.unwrap_err(),
        store.put(&reserved, json(1), PutOptions::create()).await.unwrap_err(),
        store.get_entry(&reserved).await.unwrap_err(),
        store.remove_state(&reserved).await.unwrap_err(),
        store.transaction(vec![Op::put(&reserved, json(1))]).await.unwrap_err(),
    ] {
        assert_eq!((err.kind(), err.key()), (ErrorKind::InvalidKey, Some(reserved.as_str())), "{err}");
        assert!(err.to_string().contains("reserved"), "{err}");
    }
    // With a store prefix, the caller's key is named.
    let prefixed = support_redis::connect(StoreConfig::default().key_prefix(VERSIONS)).await.unwrap();
    let err = prefixed.set("k", &1).await.unwrap_err();
    assert_eq!((err.kind(), err.key()), (ErrorKind::InvalidKey, Some("k")), "{err}");
    raw.quit().await.unwrap();
}

/// Errors on read paths name the caller's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_errors_name_the_key() {
    let Some(server) = integration_tests::fixtures::redis().await else { return };
    let store = support_redis::connect(StoreConfig::default()).await.expect("store");
    let raw = raw_client(server.url()).await;
    let list = unique("a-list");
    let _: Value = raw
        .custom(CustomCommand::new_static("RPUSH", None, false), vec![list.clone(), "x".into()])
        .await
        .unwrap();
    let errors = [
        store.get_entry(&list).await.unwrap_err(),
        store.get_value(&list).await.unwrap_err(),
        store.put(&list, json(1), PutOptions::update(ETag::new("x"))).await.unwrap_err(),
        store.remove(&list, Some(&ETag::new("x"))).await.unwrap_err(),
    ];
    for err in errors {
        assert_eq!((err.kind(), err.key()), (ErrorKind::Backend, Some(list.as_str())), "{err}");
        assert!(err.to_string().contains("WRONGTYPE") || err.to_string().contains("not a string"), "{err}");
    }
    // MGET answers nil for a key of another type, so get_state reads None.
    assert_eq!(store.get_state(&[&list]).await.unwrap()[&list], None);
    raw.quit().await.unwrap();
}

/// A watcher of everything sees the keys, never their version keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_keys_are_never_watched() {
    use integration_tests::fixtures::{Kind, Options, Server};
    // A server of its own: a watcher of "" would see other tests' keys.
    let Some(server) = Server::start_dedicated(Kind::Redis, Options::default()).await else { return };
    let store = RedisStateStore::connect(server.url()).await.unwrap();
    let mut events = store.watch("").await.unwrap();
    store.set("w", &1).await.unwrap();
    store.put("w", json(2), PutOptions::default().ttl(Duration::from_secs(60))).await.unwrap();
    store.transaction(vec![Op::put("w", json(3))]).await.unwrap();
    store.remove_state("w").await.unwrap();
    store.put("gone", json(4), PutOptions::default().ttl(Duration::from_millis(100))).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("events until the expiry")
            .unwrap()
            .unwrap();
        assert!(!event.key.starts_with(VERSIONS), "version key watched: {event:?}");
        let last = event.key == "gone" && event.kind == WatchKind::Expired;
        seen.push(event.key);
        if last {
            break;
        }
    }
    assert_eq!(seen, ["w", "w", "w", "w", "gone", "gone"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_versions_share_the_slot() {
    let Some(cluster) = Cluster::start().await else { return };
    let p = unique("etag");
    let store = support_redis::builder(&cluster.url())
        .store_config(StoreConfig::default().key_prefix(format!("{{{p}}}:")))
        .connect()
        .await
        .expect("connect to the cluster");
    aba_is_a_conflict(&store, "aba").await;
    // Transactions over the hash tag: conditions on several keys, one script.
    store.set("a", &1).await.unwrap();
    let a = etag(&store, "a").await;
    store.set("a", &1).await.unwrap();
    let err = store.transaction(vec![Op::put("b", json(2)), Op::remove_if("a", a)]).await.unwrap_err();
    assert_eq!((err.kind(), err.key()), (ErrorKind::Conflict, Some("a")));
    let a = etag(&store, "a").await;
    store.transaction(vec![Op::put("b", json(2)), Op::remove_if("a", a)]).await.expect("current ETag");

    // Keys whose braces give no hash tag, or whose tag is the whole key: the
    // version key shares their slot all the same.
    let plain = support_redis::builder(&cluster.url()).connect().await.unwrap();
    let raw = raw_client(&cluster.url()).await;
    for key in [format!("{p}}}x"), format!("{p}{{}}y"), format!("{{{p}}}z"), format!("{p}{{w")] {
        aba_is_a_conflict(&plain, &key).await;
        let mut found = Vec::new();
        for port in &cluster.ports {
            let node = raw_client(&format!("redis://127.0.0.1:{port}")).await;
            let pattern = format!("{VERSIONS}*");
            let keys: Vec<String> =
                node.custom(CustomCommand::new_static("KEYS", None, false), vec![pattern]).await.unwrap();
            found.extend(keys.into_iter().filter(|k| k.ends_with(&format!("}}{key}"))));
            node.quit().await.unwrap();
        }
        let [version] = <[String; 1]>::try_from(found).expect("one version key");
        assert_eq!(redis_keyslot(version.as_bytes()), redis_keyslot(key.as_bytes()), "{key} / {version}");
        let listed = plain.list_keys("").await.unwrap();
        assert!(listed.contains(&key) && !listed.iter().any(|k| k.starts_with(VERSIONS)));
    }
    // A TypeScript-written value in Cluster: bare SHA-1, then versioned.
    let key = format!("{{{p}}}:ts");
    let _: () = raw.set(&key, "1", None, None, false).await.unwrap();
    let bare = etag(&plain, &key).await;
    let next = plain.put(&key, json(1), PutOptions::update(bare.clone())).await.unwrap().unwrap();
    assert_ne!(next, bare);
    let err = plain.put(&key, json(2), PutOptions::update(bare)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    raw.quit().await.unwrap();
    store.destroy().await.unwrap();
    plain.destroy().await.unwrap();
}
