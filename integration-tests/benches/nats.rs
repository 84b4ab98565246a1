//! `NatsStateStore` against async-nats doing the same work in one run, on one
//! local nats-server with JetStream (found by the test fixtures): KV get / put,
//! and for a batch the one batched direct get (ADR-31 `multi_last`) the store
//! sends, written out by hand since async-nats has no call for it.
//!
//! `cargo bench -p integration-tests --bench nats`

mod harness;

use std::{collections::HashMap, sync::Arc};

use async_nats::{
    Client,
    jetstream::{self, kv},
};
use bytes::Bytes;
use futures_util::StreamExt;
use harness::Raw;
use integration_tests::fixtures;
use purista_nats_state_store::NatsStateStore;

const BUCKET: &str = "purista-bench";

struct Kv {
    kv: kv::Store,
    client: Client,
}

impl Raw for Kv {
    async fn get(&self, key: &str) -> Option<Bytes> {
        self.kv.get(key).await.unwrap()
    }
    async fn set(&self, key: &str, value: Bytes) {
        self.kv.put(key, value).await.unwrap();
    }
    async fn get_many(&self, keys: &[String]) -> Vec<Option<Bytes>> {
        // One request answers up to 1024 subjects; the bench asks for 100.
        assert!(keys.len() <= 1024);
        let subjects: Vec<String> = keys.iter().map(|k| format!("$KV.{BUCKET}.{k}")).collect();
        let body = serde_json::json!({ "multi_last": subjects, "batch": subjects.len() });
        let inbox = self.client.new_inbox();
        let mut answers = self.client.subscribe(inbox.clone()).await.unwrap();
        let request = serde_json::to_vec(&body).unwrap().into();
        self.client
            .publish_with_reply(format!("$JS.API.DIRECT.GET.KV_{BUCKET}"), inbox, request)
            .await
            .unwrap();
        // One message per subject that has one, then a status (204 EOB, or 404 for none).
        let mut found = HashMap::new();
        while let Some(message) = answers.next().await {
            if message.status.is_some() {
                break;
            }
            let headers = message.headers.unwrap();
            // Delete and purge markers are no value, as for `kv.get`.
            if headers.get("KV-Operation").is_none() {
                found.insert(headers.get("Nats-Subject").unwrap().as_str().to_owned(), message.payload);
            }
        }
        subjects.iter().map(|s| found.get(s).cloned()).collect()
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
        let kv = jetstream::new(client.clone()).get_key_value(BUCKET).await.expect("bucket");
        (store, Kv { kv, client })
    });
    let mut c = harness::criterion();
    harness::run(&mut c, &rt, "nats", Arc::new(store), Arc::new(raw));
    c.final_summary();
}
