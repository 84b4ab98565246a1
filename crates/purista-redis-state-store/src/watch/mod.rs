//! `watch` on keyspace notifications: one subscriber connection per node
//! (every primary in Cluster mode, followed as the topology changes),
//! re-subscribed by fred after reconnects. A lost connection is reported
//! at once (`Error::watch_interrupted`), and again once it is back, since
//! pub/sub keeps nothing for a connection that was gone.
//!
//! A watcher converges: the last event it yields for a key matches the key's
//! final state, and it loses nothing unless it yields an error saying so.
//! Keyspace notifications (every writer, expiry) and the values this crate's
//! writes publish come on two fred channels, so their order is lost; the
//! notifications decide the order and the published values are only looked
//! up for them (a write's `PUBLISH` comes right before its notification;
//! fred hands the value over first, so every value handed over so far is
//! taken before a notification is).
//!
//! `invalidations` (what a near cache follows) comes instead from
//! `CLIENT TRACKING` (`tracking`) unless the store was built to use
//! keyspace notifications for it too ([`CacheFeed`]): names only, on the
//! same node connections, with the same reports of lost connections.
//!
//! Here: subscribing. `node`: one node's events, in order. `stream`:
//! handing them to a consumer that may be slow. `topology`: following the
//! Cluster's primaries. `notifications`: switching keyspace notifications
//! on. `watchers`: whether writes must publish their values.

use std::{collections::HashMap, sync::Arc};

use fred::{
    clients::{Client, SubscriberClient},
    interfaces::{ClientLike, EventInterface, PubsubInterface, TrackingInterface},
    types::{
        RespVersion, Value,
        config::{Config, PerformanceConfig},
    },
};
use purista_core::{Error, ErrorKind, Result, WatchEvent, WatchStream};
use tokio::sync::{mpsc, oneshot, watch as signal};
use tokio_stream::wrappers::ReceiverStream;

use crate::{RedisStateStore, list::escape_glob, scripts::VALUE_CHANNEL};

mod node;
mod notifications;
mod stream;
mod topology;
mod tracking;
mod watchers;

pub(crate) use node::STALL_REPORTED;
pub(crate) use watchers::Watchers;

use self::{
    node::{Channels, Node},
    topology::{Owned, SlotRanges, node_config, primaries},
};

/// Messages fred queues for a watcher between two of its turns (fred's
/// default, 32, is less than one transaction of 16 writes sends).
const BROADCAST: usize = 1024;

/// The watchers of one store (its connections), stopped together by `close`.
#[derive(Debug)]
pub(crate) struct Watches {
    stop: signal::Sender<bool>,
}

impl Default for Watches {
    fn default() -> Self {
        Watches { stop: signal::channel(false).0 }
    }
}

impl Watches {
    /// Stops every watcher: each quits its connections and ends its stream.
    pub(crate) fn close(&self) {
        self.stop.send_replace(true);
    }
}

/// Where the store's [`invalidations`](purista_core::StateStore::invalidations)
/// (the feed a near cache follows) come from. `watch` always follows keyspace
/// notifications.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheFeed {
    /// `CLIENT TRACKING` in broadcast mode over RESP3 (Redis 6 or later): key
    /// names only, no server setting needed, and writes need not publish
    /// their values.
    #[default]
    ClientTracking,
    /// The keyspace notifications `watch` follows (switched on with
    /// `CONFIG SET` where the server allows it); every write of the process
    /// then publishes its value.
    KeyspaceNotifications,
}

/// What a watcher listens to.
#[derive(Clone)]
pub(super) enum Feed {
    /// Keyspace notifications and the values this crate's writes publish.
    Keyspace { patterns: Vec<String> },
    /// Broadcast tracking of the prefix: names of changed keys.
    Tracking { prefix: String },
}

/// `watch`: every change with its value.
pub(crate) async fn watch(store: &RedisStateStore, prefix: &str) -> Result<WatchStream> {
    // From now on every write of this process publishes its value.
    store.watchers().watching_here();
    let escaped = escape_glob(prefix);
    let db = store.db();
    let patterns = vec![format!("__keyspace@{db}__:{escaped}*"), format!("{VALUE_CHANNEL}{db}__:{escaped}*")];
    subscribe(store, Feed::Keyspace { patterns }).await
}

/// `invalidations`: names of changed keys, from the feed the store was built
/// with. A server that refuses `CLIENT TRACKING` (older than 6, or an ACL
/// without it) is followed by keyspace notifications instead, if it allows
/// those.
pub(crate) async fn invalidations(store: &RedisStateStore, prefix: &str) -> Result<WatchStream> {
    if store.cache_feed() == CacheFeed::KeyspaceNotifications {
        return watch(store, prefix).await;
    }
    match subscribe(store, Feed::Tracking { prefix: prefix.to_owned() }).await {
        Err(refused) if refused.kind() == ErrorKind::Unsupported => {
            tracing::info!(address = %store.target().address, reason = %refused, "following keyspace notifications instead");
            watch(store, prefix).await.map_err(|e| {
                let msg = format!("no change feed: {refused}; and keyspace notifications: {e}");
                Error::new(ErrorKind::Unsupported, msg)
            })
        }
        other => other,
    }
}

async fn subscribe(store: &RedisStateStore, feed: Feed) -> Result<WatchStream> {
    let stop = store.watches().stop.subscribe();
    if *stop.borrow() {
        let msg = format!("redis at {}: the store was destroyed", store.target().address);
        return Err(Error::new(ErrorKind::Unavailable, msg));
    }
    let (tx, rx) = mpsc::channel(stream::CHANNEL);
    let watch = Watch { store: store.detached(), feed, tx, stop };
    let base = store.pool().next();
    if store.is_cluster() {
        let primaries = primaries(base).ok_or_else(|| {
            let msg = format!("redis at {} has no known cluster state", store.target().address);
            Error::new(ErrorKind::Unavailable, msg)
        })?;
        let mut nodes = HashMap::with_capacity(primaries.len());
        for (server, slots) in primaries {
            // On failure, dropping `nodes` stops the nodes already started.
            let node = watch.start(node_config(base, &server), Some(slots)).await?;
            nodes.insert(server, node);
        }
        // The topology is asked for on a client of the watcher's own, with
        // fred's default retries (its commands only read): the store's
        // clients fail a command on its first redirection.
        let topology =
            Client::new(base.client_config(), Some(base.perf_config()), None, base.client_reconnect_policy());
        topology.init().await.map_err(|e| store.target().error(e, "connecting the topology follower"))?;
        tokio::spawn(watch.follow(topology, nodes));
    } else {
        // Runs until the stream is dropped or the store destroyed.
        let _ = watch.start(base.client_config(), None).await?;
    }
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// What every node of one `watch` call shares.
#[derive(Clone)]
struct Watch {
    store: RedisStateStore,
    feed: Feed,
    tx: mpsc::Sender<Result<WatchEvent>>,
    stop: signal::Receiver<bool>,
}

/// A running node watcher; dropping it stops a Cluster node (the follower
/// holds them).
struct NodeHandle {
    owned: Option<Arc<Owned>>,
    _retire: Option<oneshot::Sender<()>>,
}

impl Watch {
    /// Connects a subscriber to one node, makes sure notifications are on,
    /// subscribes, and starts its task.
    async fn start(&self, config: Config, slots: Option<SlotRanges>) -> Result<NodeHandle> {
        let base = self.store.pool().next();
        let perf = PerformanceConfig { broadcast_channel_capacity: BROADCAST, ..base.perf_config() };
        let config = match self.feed {
            // Invalidations come as pushes on the tracking connection itself.
            Feed::Tracking { .. } => Config { version: RespVersion::RESP3, ..config },
            Feed::Keyspace { .. } => config,
        };
        let sub = SubscriberClient::new(
            config.clone(),
            Some(perf),
            Some(base.connection_config().clone()),
            base.client_reconnect_policy(),
        );
        let target = self.store.target();
        let opened = async {
            sub.init().await.map_err(|e| target.error(e, "connecting the watcher"))?;
            // Made before subscribing: nothing after it is missed.
            let receivers = (sub.keyspace_event_rx(), sub.message_rx(), sub.invalidation_rx());
            match &self.feed {
                Feed::Keyspace { patterns } => {
                    notifications::ensure(&self.store, &sub).await?;
                    drop(sub.manage_subscriptions()); // runs detached until the client quits
                    // One PSUBSCRIBE for both patterns: no write falls between them.
                    sub.psubscribe(patterns.clone()).await.map_err(|e| target.error(e, "PSUBSCRIBE"))?;
                }
                Feed::Tracking { prefix } => tracking::start(&self.store, &sub, prefix).await?,
            }
            // fred resolves PSUBSCRIBE without waiting for the server's
            // confirmation (it drops it); a PING answered on the same
            // connection proves the server has subscribed, so a write made
            // once `watch` returns is seen.
            sub.ping::<Value>(None).await.map_err(|e| target.error(e, "PING after subscribing"))?;
            // Made after the first connection, so they hear only what
            // happens to it and reconnections.
            Ok::<_, Error>((receivers, sub.reconnect_rx(), sub.error_rx()))
        };
        let ((keyspace, values, invalidations), reconnects, errors) = match opened.await {
            Ok(receivers) => receivers,
            Err(e) => {
                let _ = sub.quit().await;
                return Err(e);
            }
        };
        let owned = slots.map(|slots| Arc::new(Owned::new(slots)));
        let (retire_tx, retire) = match owned {
            Some(_) => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let node = Node::new(self.store.clone(), config, self.feed.clone(), owned.clone(), self.tx.clone());
        let channels =
            Channels { keyspace, values, invalidations, reconnects, errors, retire, stop: self.stop.clone() };
        tokio::spawn(node.run(sub, channels));
        Ok(NodeHandle { owned, _retire: retire_tx })
    }
}
