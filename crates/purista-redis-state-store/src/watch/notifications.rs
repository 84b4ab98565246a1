//! Keyspace notifications, which `watch` needs: switched on where the server
//! allows it, else an error that says how.

use fred::{
    clients::Client,
    interfaces::{ClientLike, ConfigInterface},
    types::{Value, config::Config},
};
use purista_core::{Error, Result};

use crate::RedisStateStore;

/// The notification classes `watch` needs: keyspace channel, generic (del),
/// string (set), expired, evicted.
const NEEDED: [char; 5] = ['K', 'g', '$', 'x', 'e'];

/// Switches notifications on over a short-lived connection (the
/// subscriber's own accepts only pub/sub commands once subscribed).
pub(super) async fn renew(store: &RedisStateStore, config: Config) -> Result<()> {
    let base = store.pool().next();
    let client = Client::new(config, Some(base.perf_config()), Some(base.connection_config().clone()), None);
    let target = store.target();
    client.init().await.map_err(|e| target.error(e, "connecting to check keyspace notifications"))?;
    let done = ensure(store, &client).await;
    let _ = client.quit().await;
    done
}

/// Switches on the notification classes `watch` needs, or explains how to.
pub(super) async fn ensure<C: ConfigInterface>(store: &RedisStateStore, client: &C) -> Result<()> {
    let how = format!(
        "keyspace notifications are off on redis at {} and it refused to switch them on: set \
         `notify-keyspace-events KEA` (or at least `Kg$xe`) in redis.conf, or run \
         `CONFIG SET notify-keyspace-events KEA`",
        store.target().address
    );
    let current: Value = match client.config_get("notify-keyspace-events").await {
        Ok(v) => v,
        Err(e) => return Err(store.target().with_source(Error::unsupported(how), e)),
    };
    let flags = match current {
        Value::Array(mut parts) if parts.len() == 2 => parts.pop().and_then(|v| v.as_string()),
        Value::Map(map) => map.values().next().and_then(|v| v.as_string()),
        _ => None,
    }
    .unwrap_or_default();
    let has = |c: char| flags.contains(c) || (c != 'K' && flags.contains('A'));
    let missing: String = NEEDED.iter().copied().filter(|&c| !has(c)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let wanted = format!("{flags}{missing}");
    tracing::info!(address = %store.target().address, flags = %wanted, "switching on keyspace notifications for watch");
    client
        .config_set("notify-keyspace-events", wanted.as_str())
        .await
        .map_err(|e| store.target().with_source(Error::unsupported(how), e))
}
