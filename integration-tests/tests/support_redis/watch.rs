//! Helpers for the watch tests (`redis_watch.rs`, `redis_watch_load.rs`):
//! a server of each test's own, a raw client, and waiting for events.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use integration_tests::fixtures::{Process, RedisServer};
use purista_core::{WatchEvent, WatchKind, WatchStream};
use purista_redis_state_store::fred::{
    clients::Client,
    interfaces::ClientLike,
    prelude::Config,
    types::{ClusterHash, CustomCommand, Value},
};

/// A server of the test's own (`DEBUG SET-ACTIVE-EXPIRE 0`: keys then
/// expire only when touched); `None` (after saying why) without a binary.
pub async fn start() -> Option<Process> {
    RedisServer::new("redis-watch").debug_command().start().await
}

pub async fn next(events: &mut WatchStream) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("event within 10 s")
        .expect("stream open")
        .expect("event, not error")
}

pub async fn raw(server: &Process) -> Client {
    let raw = Client::new(Config::from_url(&server.url()).unwrap(), None, None, None);
    raw.init().await.unwrap();
    raw
}

pub async fn command(raw: &Client, name: &'static str, args: Vec<&str>) -> Value {
    raw.custom(CustomCommand::new_static(name, ClusterHash::Random, false), args).await.unwrap()
}

/// Follows `events` until the last event of each key in `want` matches it
/// (`None`: removed or expired; `Some(json)`: set to that JSON text) and the
/// stream has been quiet for 500 ms. Panics on an error event, or when that
/// does not happen within 20 s, naming the keys that differ.
pub async fn converge(events: &mut WatchStream, want: &HashMap<String, Option<String>>) {
    let mut last: HashMap<String, Option<String>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut quiet_since = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_millis(100), events.next()).await {
            Ok(Some(Ok(e))) => {
                quiet_since = Instant::now();
                let value = match e.kind {
                    WatchKind::Set { value, .. } => Some(value.as_str().unwrap().to_owned()),
                    _ => None,
                };
                last.insert(e.key, value);
            }
            Ok(Some(Err(e))) => panic!("the watcher lost events: {e}"),
            Ok(None) => panic!("the watch stream ended"),
            Err(_) => {
                let right = want.iter().all(|(k, v)| last.get(k) == Some(v));
                if right && quiet_since.elapsed() >= Duration::from_millis(500) {
                    return;
                }
            }
        }
        if Instant::now() > deadline {
            let wrong: Vec<String> = want
                .iter()
                .filter(|(k, v)| last.get(*k) != Some(*v))
                .take(10)
                .map(|(k, v)| format!("{k}: last event {:?}, store holds {v:?}", last.get(k)))
                .collect();
            panic!("no convergence within 20 s:\n  {}", wrong.join("\n  "));
        }
    }
}
