//! `RedisStateStore` against fred doing the same GET / SET / MGET, in one run,
//! on one local server (found by the test fixtures).
//!
//! `cargo bench -p integration-tests --bench redis`

mod harness;

use std::sync::Arc;

use bytes::Bytes;
use fred::prelude::*;
use harness::Raw;
use integration_tests::fixtures;
use purista_redis_state_store::RedisStateStore;

struct Fred(Client);

impl Raw for Fred {
    async fn get(&self, key: &str) -> Option<Bytes> {
        self.0.get(key).await.unwrap()
    }
    async fn set(&self, key: &str, value: Bytes) {
        self.0.set::<(), _, _>(key, value, None, None, false).await.unwrap()
    }
    async fn get_many(&self, keys: &[String]) -> Vec<Option<Bytes>> {
        self.0.mget(keys.to_vec()).await.unwrap()
    }
    async fn increment(&self, key: &str) -> bool {
        self.0.incr_by::<i64, _>(key, 1).await.unwrap();
        true
    }
    /// `SET key token NX PX ttl`, then the usual compare-and-delete script.
    async fn lock_cycle(&self, key: &str) -> bool {
        let ttl = Expiration::PX(harness::LOCK_TTL.as_millis() as i64);
        let token = format!("{}-{}", std::process::id(), key.len());
        let set: Option<String> =
            self.0.set(key, token.as_str(), Some(ttl), Some(SetOptions::NX), false).await.unwrap();
        let released: i64 = self.0.eval(RELEASE, vec![key], vec![token]).await.unwrap();
        set.is_some() && released == 1
    }
}

const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

fn main() {
    let rt = harness::runtime();
    let Some(server) = rt.block_on(fixtures::redis()) else {
        eprintln!("redis bench: no Redis server, nothing measured");
        return;
    };
    let url = server.url().to_string();
    let (store, raw) = rt.block_on(async {
        let store = RedisStateStore::connect(&url).await.expect("store");
        let client = Builder::from_config(Config::from_url(&url).unwrap()).build().unwrap();
        client.init().await.expect("fred");
        (store, client)
    });
    let mut c = harness::criterion();
    harness::run(&mut c, &rt, "redis", Arc::new(store), Arc::new(Fred(raw)));
    c.final_summary();
}
