//! `watch` on keyspace notifications: one subscriber connection per node
//! (every primary in Cluster mode), re-subscribed by fred after reconnects.

use std::collections::HashMap;

use fred::{
    clients::SubscriberClient,
    interfaces::{ClientLike, ClusterInterface, ConfigInterface, EventInterface, PubsubInterface},
    types::{
        KeyspaceEvent, Message, Value,
        config::{Config, Server, ServerConfig},
    },
};
use purista_core::{Error, ErrorKind, Json, Result, WatchEvent, WatchKind, WatchStream};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    RedisStateStore, escape_glob,
    scripts::{VALUE_CHANNEL, etag_of},
};

/// Slot ranges a Cluster node owns.
type SlotRanges = Vec<(u16, u16)>;

/// Events queued for a slow watcher before the subscriber waits for it.
const WATCH_BUFFER: usize = 4096;
/// The notification classes `watch` needs: keyspace channel, generic (del),
/// string (set), expired, evicted.
const NEEDED: [char; 5] = ['K', 'g', '$', 'x', 'e'];

pub(crate) async fn subscribe(store: &RedisStateStore, prefix: &str) -> Result<WatchStream> {
    let base = store.pool().next();
    // Each node with the slots it owns (standalone: all of them).
    let nodes: Vec<(Config, Option<SlotRanges>)> = if store.cluster() {
        let state = base.cached_cluster_state().ok_or_else(|| {
            let msg = format!("redis at {} has no known cluster state", store.target().address);
            Error::new(ErrorKind::Unavailable, msg)
        })?;
        state
            .unique_primary_nodes()
            .into_iter()
            .map(|server| {
                let slots =
                    state.slots().iter().filter(|s| s.primary == server).map(|s| (s.start, s.end)).collect();
                (Config { server: ServerConfig::Centralized { server }, ..base.client_config() }, Some(slots))
            })
            .collect()
    } else {
        vec![(base.client_config(), None)]
    };
    let escaped = escape_glob(prefix);
    let db = store.db();
    let patterns = vec![format!("__keyspace@{db}__:{escaped}*"), format!("{VALUE_CHANNEL}{db}__:{escaped}*")];
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    let mut started: Vec<SubscriberClient> = Vec::with_capacity(nodes.len());
    for (config, slots) in nodes {
        let sub = SubscriberClient::new(
            config,
            Some(base.perf_config()),
            Some(base.connection_config().clone()),
            base.client_reconnect_policy(),
        );
        started.push(sub.clone());
        let opened = async {
            sub.init().await.map_err(|e| store.target().error(e, "connecting the watcher"))?;
            ensure_notifications(store, &sub).await?;
            drop(sub.manage_subscriptions()); // runs detached until the client quits
            let receivers = (sub.keyspace_event_rx(), sub.message_rx());
            // One PSUBSCRIBE for both patterns: no write falls between them.
            sub.psubscribe(patterns.clone()).await.map_err(|e| store.target().error(e, "PSUBSCRIBE"))?;
            // fred resolves PSUBSCRIBE without waiting for the server's
            // confirmation (it drops it); a PING answered on the same
            // connection proves the server has subscribed, so a write made
            // once `watch` returns is seen.
            sub.ping::<Value>(None).await.map_err(|e| store.target().error(e, "PING after PSUBSCRIBE"))?;
            // Made after the first connection, so it hears only reconnections.
            Ok::<_, Error>((receivers.0, receivers.1, sub.reconnect_rx()))
        };
        match opened.await {
            Ok((keyspace, values, reconnects)) => {
                let node = Node {
                    store: store.clone(),
                    db,
                    slots,
                    tx: tx.clone(),
                    pending_set: HashMap::new(),
                    pending_del: HashMap::new(),
                };
                tokio::spawn(node.pump(sub, keyspace, values, reconnects));
            }
            Err(e) => {
                for s in &started {
                    let _ = s.quit().await;
                }
                return Err(e);
            }
        }
    }
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// The watcher of one node.
struct Node {
    store: RedisStateStore,
    db: u8,
    /// Slot ranges this node owns (Cluster mode), to take each published
    /// value from one node only (PUBLISH reaches every node).
    slots: Option<Vec<(u16, u16)>>,
    tx: mpsc::Sender<Result<WatchEvent>>,
    /// Keys whose change arrived published, with their `set` / `del`
    /// notification still to come (and to be skipped).
    pending_set: HashMap<String, u32>,
    pending_del: HashMap<String, u32>,
}

/// Counts one expected notification off; false when none was expected.
fn take(pending: &mut HashMap<String, u32>, key: &str) -> bool {
    match pending.get_mut(key) {
        Some(n) => {
            *n -= 1;
            if *n == 0 {
                pending.remove(key);
            }
            true
        }
        None => false,
    }
}

impl Node {
    async fn pump(
        mut self,
        sub: SubscriberClient,
        mut keyspace: broadcast::Receiver<KeyspaceEvent>,
        mut values: broadcast::Receiver<Message>,
        mut reconnects: broadcast::Receiver<Server>,
    ) {
        loop {
            let open = tokio::select! {
                biased;
                _ = self.tx.closed() => false,
                // First: what arrives after a reconnection is reported after the gap.
                r = reconnects.recv() => self.on_reconnect(r).await,
                m = values.recv() => self.on_value(m).await,
                e = keyspace.recv() => {
                    // fred hands a script's PUBLISH to `values` before the
                    // SET's notification to `keyspace`: take what is already
                    // there first, so that a published value is matched.
                    let mut open = true;
                    loop {
                        match values.try_recv() {
                            Ok(m) => open &= self.on_value(Ok(m)).await,
                            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                                open &= self.on_value(Err(broadcast::error::RecvError::Lagged(n))).await
                            }
                            Err(_) => break,
                        }
                    }
                    open && self.on_keyspace(e).await
                }
            };
            if !open {
                break;
            }
        }
        let _ = sub.quit().await;
    }

    async fn send(&self, event: Result<WatchEvent>) -> bool {
        self.tx.send(event).await.is_ok()
    }

    async fn lagged(&self, n: u64) -> bool {
        self.send(Err(Error::new(
            ErrorKind::Backend,
            format!("watcher fell behind: {n} events were dropped"),
        )))
        .await
    }

    /// Pub/sub keeps nothing for a connection that is gone: say that changes
    /// may have been missed, so that the watcher can read afresh, and forget
    /// the notifications still expected from before.
    async fn on_reconnect(
        &mut self,
        server: std::result::Result<Server, broadcast::error::RecvError>,
    ) -> bool {
        let server = match server {
            Ok(server) => server.to_string(),
            Err(broadcast::error::RecvError::Lagged(_)) => "the server".to_owned(),
            Err(broadcast::error::RecvError::Closed) => return false,
        };
        self.pending_set.clear();
        self.pending_del.clear();
        let msg = format!(
            "watch: the connection to {server} was re-established; changes made while it was down were not seen"
        );
        self.send(Err(Error::new(ErrorKind::Unavailable, msg))).await
    }

    async fn on_value(&mut self, message: std::result::Result<Message, broadcast::error::RecvError>) -> bool {
        let message = match message {
            Ok(m) => m,
            Err(broadcast::error::RecvError::Lagged(n)) => return self.lagged(n).await,
            Err(broadcast::error::RecvError::Closed) => return false,
        };
        let head = format!("{VALUE_CHANNEL}{}__:", self.db);
        let Some(key) = message.channel.strip_prefix(head.as_str()).map(str::to_owned) else { return true };
        if let Some(slots) = &self.slots {
            let slot = fred::util::redis_keyslot(key.as_bytes());
            if !slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)) {
                return true;
            }
        }
        let Some(bytes) = message.value.into_bytes() else { return true };
        let kind = match bytes.first() {
            Some(b's') => {
                let value = bytes.slice(1..);
                *self.pending_set.entry(key.clone()).or_default() += 1;
                WatchKind::Set { etag: Some(etag_of(&value)), value: Json::from_stored(value) }
            }
            Some(b'd') => {
                *self.pending_del.entry(key.clone()).or_default() += 1;
                WatchKind::Removed
            }
            _ => return true,
        };
        self.send(Ok(WatchEvent { key, kind })).await
    }

    async fn on_keyspace(
        &mut self,
        event: std::result::Result<KeyspaceEvent, broadcast::error::RecvError>,
    ) -> bool {
        let event = match event {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => return self.lagged(n).await,
            Err(broadcast::error::RecvError::Closed) => return false,
        };
        let Some(key) = event.key.into_string().filter(|k| !crate::etag::is_version_key(k)) else {
            return true;
        };
        let kind = match event.operation.as_str() {
            "set" => {
                if take(&mut self.pending_set, &key) {
                    // Already reported with its published value.
                    return true;
                }
                // Another client's write: read the value now.
                match self.store.get_raw(&key).await {
                    // Gone again already: its `del`/`expired` event follows.
                    Ok(None) => return true,
                    Ok(Some(bytes)) => {
                        WatchKind::Set { etag: Some(etag_of(&bytes)), value: Json::from_stored(bytes) }
                    }
                    Err(e) => return self.send(Err(e.with_key(key))).await,
                }
            }
            "del" if take(&mut self.pending_del, &key) => return true,
            "del" | "evicted" => WatchKind::Removed,
            "expired" => WatchKind::Expired,
            _ => return true,
        };
        self.send(Ok(WatchEvent { key, kind })).await
    }
}

/// Switches on the notification classes `watch` needs, or explains how to.
async fn ensure_notifications(store: &RedisStateStore, sub: &SubscriberClient) -> Result<()> {
    let how = format!(
        "keyspace notifications are off on redis at {} and it refused to switch them on: set \
         `notify-keyspace-events KEA` (or at least `Kg$xe`) in redis.conf, or run \
         `CONFIG SET notify-keyspace-events KEA`",
        store.target().address
    );
    let current: Value = match sub.config_get("notify-keyspace-events").await {
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
    sub.config_set("notify-keyspace-events", wanted.as_str())
        .await
        .map_err(|e| store.target().with_source(Error::unsupported(how), e))
}
