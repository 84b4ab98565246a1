//! A PURISTA service whose state lives behind the Dapr sidecar.
//!
//! ```text
//! cargo run -p purista-dapr-sdk --features emulator --example counter
//! ```
//!
//! With `DAPR_GRPC_ENDPOINT` (or `DAPR_GRPC_PORT`) set it talks to that
//! sidecar (`DAPR_API_TOKEN` if needed, component `statestore`); otherwise
//! it starts the in-process emulator.

use std::time::Duration;

use purista_core::{ETag, Json, Op, PutOptions, StateStore, StateStoreExt};
use purista_dapr_sdk::{DaprConfig, DaprEventBridge, DaprEventBridgeConfig, emulator::Sidecar};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let real =
        std::env::var_os("DAPR_GRPC_ENDPOINT").is_some() || std::env::var_os("DAPR_GRPC_PORT").is_some();
    // Kept alive until the end of main: dropping it stops the emulator.
    let mut _sidecar = None;
    let dapr = if real {
        DaprConfig::from_env()
    } else {
        let sidecar = Sidecar::builder().app_id("counter").start().await?;
        println!("no sidecar configured: emulator at {}", sidecar.endpoint());
        let config = DaprConfig::default().endpoint(sidecar.endpoint());
        _sidecar = Some(sidecar);
        config
    };
    let config = DaprEventBridgeConfig::default().with_dapr(dapr).state_store_name("statestore");
    let bridge = DaprEventBridge::connect(config).await?;

    let service = bridge
        .service("counter", "1")
        .command("hit", |ctx, page: String| async move {
            let key = format!("hits:{page}");
            Ok(ctx.states.update(&key, None, |n: Option<u64>| n.unwrap_or(0) + 1).await?)
        })
        .build();
    for _ in 0..3 {
        let hits: u64 = service.invoke("hit", &"home").await?;
        println!("home page hits: {hits}");
    }

    let store = bridge.state_store();
    // Optimistic concurrency: a stale ETag is a conflict.
    store.set("greeting", &"hello").await?;
    let entry = store.get_entry("greeting").await?.expect("just written");
    store.put("greeting", Json::encode("hi")?, PutOptions::update(entry.etag.clone())).await?;
    let stale = store.put("greeting", Json::encode("hey")?, PutOptions::update(entry.etag)).await;
    println!(
        "write with a stale etag: {}",
        stale.map(|_| "ok".to_string()).unwrap_or_else(|e| e.to_string())
    );

    // A TTL, and a transaction that is all or nothing.
    store.set_with_ttl("session:42", &"alice", Duration::from_secs(30)).await?;
    let expires = store.get_entry("session:42").await?.and_then(|e| e.expires_at);
    println!("session expires at {expires:?}");
    let failed = store
        .transaction(vec![
            Op::put("audit:1", Json::encode("login")?),
            Op::remove_if("session:42", ETag::new("not-the-etag")),
        ])
        .await;
    println!(
        "transaction with a bad etag: {:?} on key {:?}",
        failed.as_ref().err().map(|e| e.kind()),
        failed.as_ref().err().and_then(|e| e.key())
    );
    println!("audit:1 after the failed transaction: {:?}", store.get::<String>("audit:1").await?);

    service.destroy().await?;
    Ok(())
}
