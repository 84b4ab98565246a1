//! Interop with other Redis clients (a PURISTA TypeScript service, redis-cli):
//! the stored value is the plain JSON text, and JSON written by others reads
//! back, with ETags and TTLs. (Watching other clients' writes is tested in
//! `redis_watch.rs`.)

mod support_redis;

use std::time::Duration;

use purista_core::{ErrorKind, Json, PutOptions, StateStore, StateStoreExt, StoreConfig, testkit::unique};
use purista_redis_state_store::fred::{
    clients::Client,
    interfaces::{ClientLike, KeysInterface},
    prelude::{Config, Expiration},
    types::{CustomCommand, Value},
};

async fn raw_client(url: &str) -> Client {
    let client = Client::new(Config::from_url(url).expect("url"), None, None, None);
    client.init().await.expect("raw client connects");
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_value_is_the_exact_json_a_plain_get_returns() {
    let Some(server) = integration_tests::fixtures::redis().await else { return };
    let store = support_redis::connect(StoreConfig::default()).await.expect("store");
    let raw = raw_client(server.url()).await;
    let key = unique("interop-json");
    let text = r#"{"user":{"id":7,"name":"Zoë"},"tags":["a","b"],"n":1.5}"#;
    store.set_state(&key, Json::from_bytes(text.as_bytes().to_vec()).unwrap()).await.unwrap();
    let got: Option<String> = raw.get(&key).await.unwrap();
    assert_eq!(got.as_deref(), Some(text), "GET shows the JSON text itself");
    // Typed writes too: serde's compact JSON, nothing around it.
    store.set(&key, &vec![1, 2, 3]).await.unwrap();
    assert_eq!(raw.get::<Option<String>, _>(&key).await.unwrap().as_deref(), Some("[1,2,3]"));
    // Beside the key, only its version key (for ETags; see redis_etag.rs).
    let mut extra: Vec<String> =
        raw.custom(CustomCommand::new_static("KEYS", None, false), vec![format!("*{key}*")]).await.unwrap();
    extra.sort();
    assert_eq!(extra.len(), 2, "{extra:?}");
    assert!(
        extra[0].starts_with("__purista_etag__:{") && extra[0].ends_with(&format!("}}{key}")),
        "{extra:?}"
    );
    assert_eq!(extra[1], key, "the value under the plain key");
    // With a key prefix the key is prefix + name.
    let prefixed = support_redis::connect(StoreConfig::default().key_prefix("svc-a:")).await.unwrap();
    prefixed.set(&key, &"scoped").await.unwrap();
    let got: Option<String> = raw.get(format!("svc-a:{key}")).await.unwrap();
    assert_eq!(got.as_deref(), Some("\"scoped\""));
    // A TTL is a plain PX expiry.
    store
        .put(&key, Json::encode(&1).unwrap(), PutOptions::default().ttl(Duration::from_millis(1500)))
        .await
        .unwrap();
    let pttl: i64 = raw.pttl(&key).await.unwrap();
    assert!((1..=1500).contains(&pttl), "PTTL {pttl}");
    store.set(&key, &2).await.unwrap();
    assert_eq!(raw.pttl::<i64, _>(&key).await.unwrap(), -1, "a write without TTL removes the TTL");
    raw.quit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_written_by_another_client_reads_back_with_etag_and_ttl() {
    let Some(server) = integration_tests::fixtures::redis().await else { return };
    let store = support_redis::connect(StoreConfig::default()).await.expect("store");
    let raw = raw_client(server.url()).await;
    let key = unique("interop-foreign");
    let text = r#"{"count":41}"#;
    let _: () = raw.set(&key, text, Some(Expiration::PX(60_000)), None, false).await.unwrap();
    let map = store.get_state(&[&key]).await.unwrap();
    assert_eq!(map[&key].as_ref().and_then(Json::as_str), Some(text));
    let decoded: std::collections::HashMap<String, u64> = store.get(&key).await.unwrap().unwrap();
    assert_eq!(decoded["count"], 41);
    let entry = store.get_entry(&key).await.unwrap().expect("entry");
    assert!(entry.expires_at.is_some(), "TTL set by another client is reported");
    // ETag works on foreign values: conditional update with it succeeds once.
    store
        .put(&key, Json::encode(&42).unwrap(), PutOptions::update(entry.etag.clone()))
        .await
        .expect("update");
    let err = store.put(&key, Json::encode(&43).unwrap(), PutOptions::update(entry.etag)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(raw.get::<Option<String>, _>(&key).await.unwrap().as_deref(), Some("42"));
    // A foreign writer changing the value invalidates an ETag.
    let before = store.get_entry(&key).await.unwrap().unwrap().etag;
    let _: () = raw.set(&key, "44", None, None, false).await.unwrap();
    let err = store.remove(&key, Some(&before)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    // Bytes that are not JSON come back as stored; decoding reports them.
    let _: () = raw.set(&key, "not json", None, None, false).await.unwrap();
    let err = store.get::<u64>(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidValue);
    // A key of another type is an error, not a panic.
    let list = unique("interop-list");
    let _: Value = raw
        .custom(CustomCommand::new_static("RPUSH", None, false), vec![list.clone(), "x".into()])
        .await
        .unwrap();
    let err = store.get_entry(&list).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    raw.quit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glob_characters_in_a_prefix_match_literally() {
    let Some(_) = integration_tests::fixtures::redis().await else { return };
    let store = support_redis::connect(StoreConfig::default()).await.expect("store");
    let p = unique("glob");
    let star = format!("{p}*[x]?\\:");
    for k in [format!("{star}1"), format!("{p}-a:2"), format!("{p}x[x]?\\:3"), format!("{p}xx?\\:4")] {
        store.set(&k, &1).await.unwrap();
    }
    assert_eq!(store.list_keys(&star).await.unwrap(), vec![format!("{star}1")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_on_the_callers_own_client_leaves_it_open() {
    let Some(server) = integration_tests::fixtures::redis().await else { return };
    let raw = raw_client(server.url()).await;
    let store = purista_redis_state_store::RedisStateStore::from_client(raw.clone(), StoreConfig::default())
        .await
        .expect("store on an existing client");
    let key = unique("own-client");
    store.set(&key, &"shared").await.unwrap();
    assert_eq!(raw.get::<Option<String>, _>(&key).await.unwrap().as_deref(), Some("\"shared\""));
    store.destroy().await.unwrap();
    assert!(raw.is_connected(), "destroy leaves the caller's client open");
    assert_eq!(raw.get::<Option<String>, _>(&key).await.unwrap().as_deref(), Some("\"shared\""));
    // A client not yet connected is connected by the store.
    let fresh = Client::new(Config::from_url(server.url()).unwrap(), None, None, None);
    let store =
        purista_redis_state_store::RedisStateStore::from_client(fresh, StoreConfig::default()).await.unwrap();
    assert_eq!(store.get::<String>(&key).await.unwrap().as_deref(), Some("shared"));
    raw.quit().await.unwrap();
}

/// How many times the server ran `command` (from `INFO commandstats`).
async fn calls(raw: &Client, command: &str) -> u64 {
    let info: String =
        raw.custom(CustomCommand::new_static("INFO", None, false), vec!["commandstats"]).await.unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// Plain upserts without TTL are one `MSET` of value and version (about as
/// cheap for the server as a plain `SET`, several times cheaper than the
/// write script) while nobody watches; once a watcher holds a pattern
/// subscription (here: another store, as another process would), they go
/// through the script again so the watcher gets each value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upserts_are_plain_sets_unless_someone_watches() {
    use futures_util::StreamExt;
    use integration_tests::fixtures::{Kind, Options, Server};
    use purista_core::WatchKind;
    use purista_redis_state_store::RedisStateStore;

    // A server of its own: the shared one has other tests' watchers and scripts.
    let Some(server) = Server::start_dedicated(Kind::Redis, Options::default()).await else { return };
    let raw = raw_client(server.url()).await;
    let store = RedisStateStore::connect(server.url()).await.unwrap();
    let (msets, scripts) = (calls(&raw, "mset").await, calls(&raw, "evalsha").await);
    for i in 0..10 {
        store.set("plain", &i).await.unwrap();
    }
    assert_eq!(calls(&raw, "mset").await - msets, 10, "unwatched upserts are one MSET each");
    assert_eq!(calls(&raw, "evalsha").await, scripts, "no script for unwatched upserts");
    // With a TTL (MSET has none), the script sets both with PX.
    store.set_with_ttl("plain-ttl", &1, Duration::from_secs(60)).await.unwrap();
    assert!(raw.pttl::<i64, _>("plain-ttl").await.unwrap() > 50_000, "the TTL was set");

    let watcher = RedisStateStore::connect(server.url()).await.unwrap();
    let mut events = watcher.watch("watched:").await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await; // past the NUMPAT refresh
    let scripts = calls(&raw, "evalsha").await;
    store.set("watched:k", &"v").await.unwrap();
    store.remove_state("watched:k").await.unwrap();
    assert!(calls(&raw, "evalsha").await > scripts, "watched upserts publish through the script");
    let set = tokio::time::timeout(Duration::from_secs(5), events.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(set.key, "watched:k");
    assert!(matches!(set.kind, WatchKind::Set { ref value, .. } if value.decode::<String>().unwrap() == "v"));
    let removed =
        tokio::time::timeout(Duration::from_secs(5), events.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((removed.key.as_str(), removed.kind), ("watched:k", WatchKind::Removed));
}
