//! `NatsStateStore` against async-nats's KV doing the same get / put (and
//! concurrent gets for a batch, as JetStream KV has no multi-get), in one run,
//! on one local nats-server with JetStream (found by the test fixtures).
//!
//! `cargo bench -p integration-tests --bench nats`

mod harness;

use std::sync::Arc;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use harness::Raw;
use integration_tests::fixtures;
use purista_nats_state_store::NatsStateStore;

const BUCKET: &str = "purista-bench";

struct Kv(kv::Store);

impl Raw for Kv {
    async fn get(&self, key: &str) -> Option<Bytes> {
        self.0.get(key).await.unwrap()
    }
    async fn set(&self, key: &str, value: Bytes) {
        self.0.put(key, value).await.unwrap();
    }
    async fn get_many(&self, keys: &[String]) -> Vec<Option<Bytes>> {
        let gets = keys.iter().map(|k| self.0.get(k.as_str()));
        futures_util::future::join_all(gets).await.into_iter().map(Result::unwrap).collect()
    }
}

fn main() {
    let rt = harness::runtime();
    let Some(server) = rt.block_on(fixtures::nats()) else {
        eprintln!("nats bench: no NATS server, nothing measured");
        return;
    };
    let url = server.url().to_string();
    let (store, raw) = rt.block_on(async {
        let store = NatsStateStore::builder().server(&url).bucket(BUCKET).connect().await.expect("store");
        let client = async_nats::connect(&url).await.expect("nats");
        let kv = jetstream::new(client).get_key_value(BUCKET).await.expect("bucket");
        (store, kv)
    });
    let mut c = harness::criterion();
    harness::run(&mut c, &rt, "nats", Arc::new(store), Arc::new(Kv(raw)));
    c.final_summary();
}
