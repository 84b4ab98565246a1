//! The server fixtures, proven with raw clients (fred, async-nats): the shared
//! servers answer, a persistent dedicated server keeps its data across a
//! restart and a crash, a paused server makes commands time out and answers
//! again once resumed, and a missing server skips or fails the test loudly.
//!
//! Run through one path only with `PURISTA_TEST_SERVERS=container` or
//! `PURISTA_TEST_SERVERS=local`; add `PURISTA_TEST_REQUIRE_SERVICES=1` to turn
//! skips into failures.

use std::{
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_nats::jetstream::{self, kv};
use fred::prelude::{ClientLike, Config, KeysInterface};
use integration_tests::fixtures::{self, Kind, Options, Server, Source};
use tokio::time::timeout;

/// A name no other test (or earlier run against the same server) uses.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").subsec_nanos();
    format!("{prefix}-{}-{nanos}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn redis_client(url: &str) -> fred::prelude::Client {
    let config = Config::from_url(url).expect("fixture URL is a Redis URL");
    let client = fred::types::Builder::from_config(config).build().expect("build fred client");
    client.init().await.expect("connect to Redis");
    client
}

async fn nats_kv(url: &str, bucket: &str) -> kv::Store {
    let client = async_nats::connect(url).await.expect("connect to NATS");
    jetstream::new(client)
        .create_key_value(kv::Config { bucket: bucket.to_owned(), ..Default::default() })
        .await
        .expect("create KV bucket")
}

#[tokio::test]
async fn shared_redis_answers_set_and_get() {
    let Some(server) = fixtures::redis().await else {
        return;
    };
    assert!(server.url().starts_with("redis://"), "{}", server.url());
    let client = redis_client(server.url()).await;
    let key = unique("smoke");

    let _: () = client.set(&key, "value-1", None, None, false).await.expect("SET");
    let value: Option<String> = client.get(&key).await.expect("GET");
    assert_eq!(value.as_deref(), Some("value-1"));

    let _: () = client.del(&key).await.expect("DEL");
    let value: Option<String> = client.get(&key).await.expect("GET");
    assert_eq!(value, None);
}

#[tokio::test]
async fn shared_redis_is_the_same_server_for_every_test() {
    let (Some(first), Some(second)) = (fixtures::redis().await, fixtures::redis().await) else {
        return;
    };
    assert!(std::ptr::eq(first, second));
}

#[tokio::test]
async fn shared_nats_has_jetstream_key_value() {
    let Some(server) = fixtures::nats().await else {
        return;
    };
    assert!(server.url().starts_with("nats://"), "{}", server.url());
    let bucket = unique("smoke");
    let store = nats_kv(server.url(), &bucket).await;

    let revision = store.put("greeting", "hello".into()).await.expect("put");
    assert!(revision >= 1);
    let value = store.get("greeting").await.expect("get");
    assert_eq!(value.as_deref(), Some(&b"hello"[..]));

    let client = async_nats::connect(server.url()).await.expect("connect");
    jetstream::new(client).delete_key_value(&bucket).await.expect("delete bucket");
}

#[tokio::test]
async fn dedicated_redis_with_persistence_keeps_writes_across_restart_and_kill() {
    let Some(mut server) = Server::start_dedicated(Kind::Redis, Options { persistence: true }).await else {
        return;
    };
    assert_ne!(server.source(), Source::Env);
    let url = server.url().to_owned();

    let client = redis_client(&url).await;
    let _: () = client.set("before-restart", "1", None, None, false).await.expect("SET");
    client.quit().await.expect("QUIT");
    server.restart().await.expect("restart");
    assert_eq!(server.url(), url, "a restart keeps the URL");

    let client = redis_client(&url).await;
    let value: Option<String> = client.get("before-restart").await.expect("GET");
    assert_eq!(value.as_deref(), Some("1"), "value lost by a clean restart");

    // appendfsync always: an acknowledged write survives even a SIGKILL.
    let _: () = client.set("before-kill", "2", None, None, false).await.expect("SET");
    let _ = client.quit().await;
    server.kill().await.expect("kill");
    server.start().await.expect("start after kill");

    let client = redis_client(&url).await;
    let values: (Option<String>, Option<String>) =
        (client.get("before-restart").await.expect("GET"), client.get("before-kill").await.expect("GET"));
    assert_eq!(values, (Some("1".to_owned()), Some("2".to_owned())));
}

#[tokio::test]
async fn dedicated_redis_without_persistence_forgets_on_restart() {
    let Some(mut server) = Server::start_dedicated(Kind::Redis, Options::default()).await else {
        return;
    };
    let client = redis_client(server.url()).await;
    let _: () = client.set("k", "v", None, None, false).await.expect("SET");
    let _ = client.quit().await;
    server.restart().await.expect("restart");

    let client = redis_client(server.url()).await;
    let value: Option<String> = client.get("k").await.expect("GET");
    assert_eq!(value, None, "no persistence asked for, none expected");
}

#[tokio::test]
async fn dedicated_redis_pause_makes_commands_time_out_until_resume() {
    let Some(mut server) = Server::start_dedicated(Kind::Redis, Options::default()).await else {
        return;
    };
    let client = redis_client(server.url()).await;
    let _: () = client.set("k", "v", None, None, false).await.expect("SET");

    server.pause().await.expect("pause");
    let while_paused = timeout(Duration::from_millis(500), client.get::<Option<String>, _>("k")).await;
    assert!(while_paused.is_err(), "GET answered while paused: {while_paused:?}");

    server.resume().await.expect("resume");
    let after = timeout(Duration::from_secs(10), client.get::<Option<String>, _>("k"))
        .await
        .expect("GET answered after resume")
        .expect("GET");
    assert_eq!(after.as_deref(), Some("v"));
}

#[tokio::test]
async fn dedicated_nats_keeps_key_value_data_across_kill() {
    let Some(mut server) = Server::start_dedicated(Kind::Nats, Options { persistence: true }).await else {
        return;
    };
    let store = nats_kv(server.url(), "durable").await;
    store.put("k", "v".into()).await.expect("put");

    server.kill().await.expect("kill");
    server.start().await.expect("start after kill");

    let store = nats_kv(server.url(), "durable").await;
    let value = store.get("k").await.expect("get");
    assert_eq!(value.as_deref(), Some(&b"v"[..]), "acknowledged put lost");
}

#[tokio::test]
async fn dedicated_nats_pause_makes_requests_time_out_until_resume() {
    let Some(mut server) = Server::start_dedicated(Kind::Nats, Options::default()).await else {
        return;
    };
    let store = nats_kv(server.url(), "paused").await;
    store.put("k", "v".into()).await.expect("put");

    server.pause().await.expect("pause");
    let while_paused = timeout(Duration::from_millis(500), store.get("k")).await;
    assert!(while_paused.is_err(), "get answered while paused: {while_paused:?}");

    server.resume().await.expect("resume");
    let after = timeout(Duration::from_secs(10), store.get("k"))
        .await
        .expect("get answered after resume")
        .expect("get");
    assert_eq!(after.as_deref(), Some(&b"v"[..]));
}

/// Runs one test of this binary again in a child process with no way to get
/// a Redis server, and returns (succeeded, stdout + stderr).
fn run_without_redis(require: &str) -> (bool, String) {
    let output = Command::new(std::env::current_exe().expect("test binary path"))
        .args(["shared_redis_answers_set_and_get", "--exact", "--nocapture"])
        .env_remove("PURISTA_TEST_REDIS_URL")
        .env("PURISTA_TEST_SERVERS", "local")
        .env("PURISTA_TEST_REDIS_SERVER_BIN", "/nonexistent/redis-server")
        .env("PURISTA_TEST_REQUIRE_SERVICES", require)
        .output()
        .expect("run the test binary");
    let text =
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn missing_server_skips_loudly_and_fails_when_required() {
    let (passed, text) = run_without_redis("0");
    assert!(passed, "a missing server must skip, not fail:\n{text}");
    assert!(text.contains("NO Redis SERVER"), "no loud message:\n{text}");
    assert!(text.contains("SKIPPED shared_redis_answers_set_and_get"), "the skip is not named:\n{text}");
    assert!(text.contains("/nonexistent/redis-server is not a file"), "{text}");

    let (passed, text) = run_without_redis("1");
    assert!(!passed, "PURISTA_TEST_REQUIRE_SERVICES=1 must fail:\n{text}");
    assert!(text.contains("PURISTA_TEST_REQUIRE_SERVICES=1 requires Redis"), "{text}");
}
