//! A page-hit counter service on Redis.
//!
//! ```sh
//! redis-server --port 6379 &
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p purista-redis-state-store --example redis_counter
//! redis-cli GET counter:hits:home   # the plain JSON number
//! ```

use std::time::Duration;

use purista_core::{PutOptions, Service, StateStore, StateStoreExt, StoreConfig};
use purista_redis_state_store::RedisStateStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let store = RedisStateStore::builder(url)
        .store_config(StoreConfig::default().key_prefix("counter:"))
        .command_timeout(Duration::from_secs(2))
        .connect()
        .await?;

    let service = Service::builder("counter", "1")
        .state_store(store.clone())
        .command("hit", |ctx, page: String| async move {
            let key = format!("hits:{page}");
            // Compare-and-swap loop on the ETag: safe with many instances.
            let hits = ctx.states.update(&key, None, |n: Option<u64>| n.unwrap_or(0) + 1).await?;
            Ok(hits)
        })
        .build();

    for _ in 0..3 {
        let hits: u64 = service.invoke("hit", &"home").await?;
        println!("home has {hits} hits");
    }

    // A value with a TTL, and its expiry read back.
    let json = purista_core::Json::encode(&"recently active")?;
    store.put("status", json, PutOptions::default().ttl(Duration::from_secs(30))).await?;
    let entry = store.get_entry("status").await?.expect("just written");
    println!("status {} (etag {}, expires at {:?})", entry.value, entry.etag, entry.expires_at);
    println!("keys: {:?}", store.list_keys("").await?);

    service.destroy().await?;
    Ok(())
}
