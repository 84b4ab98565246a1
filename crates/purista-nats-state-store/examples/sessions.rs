//! Sessions in NATS JetStream KV: typed get/set, per-key TTL, an ETag update,
//! a transaction, listing and watching by prefix.
//!
//! Start a server with JetStream (nats-server 2.12+ for transactions):
//!
//! ```text
//! nats-server -js -sd /tmp/nats-data -a 127.0.0.1 -p 4222
//! cargo run -p purista-nats-state-store --example sessions
//! ```
//!
//! `NATS_URL` picks another server.

use std::time::Duration;

use futures_util::StreamExt;
use purista_core::{Json, Op, PutOptions, StateStore, StateStoreExt};
use purista_nats_state_store::NatsStateStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let store = NatsStateStore::builder().server(url).bucket("purista-example").connect().await?;
    println!("bucket {} supports {:?}", store.bucket(), store.capabilities());

    let mut changes = store.watch("session:").await?;

    // `session:abc` is no valid NATS key; the store maps it (to `session=3Aabc`).
    store.set("session:abc", &vec!["cart", "checkout"]).await?;
    let steps: Option<Vec<String>> = store.get("session:abc").await?;
    println!("session:abc = {steps:?}");

    if store.capabilities().ttl.is_some() {
        store.set_with_ttl("session:tmp", &"short lived", Duration::from_secs(2)).await?;
        println!(
            "session:tmp expires at {:?}",
            store.get_entry("session:tmp").await?.and_then(|e| e.expires_at)
        );
    }

    // Compare-and-swap on the revision.
    let entry = store.get_entry("session:abc").await?.expect("just written");
    store.put("session:abc", Json::encode(&vec!["done"])?, PutOptions::update(entry.etag.clone())).await?;
    let stale = store.put("session:abc", Json::encode(&vec!["again"])?, PutOptions::update(entry.etag)).await;
    println!("update with a stale etag: {}", stale.unwrap_err());

    if store.capabilities().transactions {
        store
            .transaction(vec![Op::put("session:xyz", Json::encode(&vec!["new"])?), Op::remove("session:abc")])
            .await?;
    }
    println!("sessions now: {:?}", store.list_keys("session:").await?);

    for _ in 0..4 {
        match tokio::time::timeout(Duration::from_secs(3), changes.next()).await {
            Ok(Some(event)) => {
                let event = event?;
                println!("watched: {} {:?}", event.key, event.kind)
            }
            _ => break,
        }
    }
    store.destroy().await?;
    Ok(())
}
