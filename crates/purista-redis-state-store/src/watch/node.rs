//! The watcher of one node: keyspace notifications in the order Redis
//! applied the changes, each matched with the value a write of this crate
//! published for it, or else read from the server; or, for
//! `invalidations`, the names `CLIENT TRACKING` pushes.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use fred::{
    clients::SubscriberClient,
    error::Error as RedisError,
    interfaces::ClientLike,
    types::{
        KeyspaceEvent, Message,
        client::Invalidation,
        config::{Config, Server},
    },
};
use purista_core::{Error, ErrorKind, Json, Result, WatchEvent, WatchKind};
use tokio::sync::{broadcast, mpsc, oneshot, watch as signal};

use super::{Feed, notifications, stream::Outbox, topology::Owned, tracking};
use crate::{RedisStateStore, entries, etag, scripts::VALUE_CHANNEL};

/// A published value not claimed by its notification within this time
/// belongs to none (its write failed after publishing): dropped.
const UNCLAIMED: Duration = Duration::from_secs(10);

/// How often the subscriber connection is asked to answer, and how long it
/// has to: a frozen server (paused, cut off without a reset) closes no
/// connection, and its notifications would stop without a word; another
/// primary may meanwhile take writes (after a failover). A message that
/// arrives meanwhile is an answer too: behind a backlog of notifications
/// the PING's reply may take longer than its patience.
const HEARTBEAT: Duration = Duration::from_millis(250);
const HEARTBEAT_PATIENCE: Duration = Duration::from_secs(1);
/// `Capabilities::watch_stall`: a ping's wait and its patience, and room
/// for a busy machine to schedule the report.
pub(crate) const STALL_REPORTED: Duration = Duration::from_secs(2);

/// What a node task listens to.
pub(super) struct Channels {
    pub(super) keyspace: broadcast::Receiver<KeyspaceEvent>,
    pub(super) values: broadcast::Receiver<Message>,
    pub(super) invalidations: broadcast::Receiver<Invalidation>,
    pub(super) reconnects: broadcast::Receiver<Server>,
    /// Connection errors: the connection broke, or a reconnect failed.
    pub(super) errors: broadcast::Receiver<(RedisError, Option<Server>)>,
    pub(super) retire: Option<oneshot::Receiver<()>>,
    pub(super) stop: signal::Receiver<bool>,
}

/// Resolves once the store's watchers are told to stop.
pub(super) async fn stopped(stop: &mut signal::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: dropped at once.
    let _ = stop.wait_for(|s| *s).await;
}

/// Resolves when a Cluster node's handle is dropped (never for others).
async fn retired(retire: &mut Option<oneshot::Receiver<()>>) {
    match retire {
        Some(r) => {
            let _ = r.await;
        }
        None => std::future::pending().await,
    }
}

/// Whether the server answers a PING on the subscriber connection in time.
async fn heartbeat(sub: SubscriberClient) -> bool {
    matches!(tokio::time::timeout(HEARTBEAT_PATIENCE, sub.ping::<fred::types::Value>(None)).await, Ok(Ok(_)))
}

/// A change a write of this crate published, waiting for its notification.
enum Published {
    Set(Bytes),
    Removed,
}

/// The watcher of one node.
pub(super) struct Node {
    store: RedisStateStore,
    config: Config,
    /// What is listened to, to renew it on a new connection.
    feed: Feed,
    db: u8,
    /// Slot ranges this node owns (Cluster mode), to take each published
    /// value from one node only (PUBLISH reaches every node).
    owned: Option<Arc<Owned>>,
    generation: u64,
    tx: mpsc::Sender<Result<WatchEvent>>,
    /// Published changes per key, oldest first, not yet claimed by their
    /// notification.
    published: HashMap<String, VecDeque<(Instant, Published)>>,
    outbox: Outbox,
    /// The loss of the connection was reported and it is not back yet
    /// (one error per outage, however many reconnects fail).
    interrupted: bool,
    /// A message came in since the last PING was sent.
    heard: bool,
}

impl Node {
    pub(super) fn new(
        store: RedisStateStore,
        config: Config,
        feed: Feed,
        owned: Option<Arc<Owned>>,
        tx: mpsc::Sender<Result<WatchEvent>>,
    ) -> Self {
        Node {
            db: store.db(),
            store,
            config,
            feed,
            owned,
            generation: 0,
            outbox: Outbox::new(tx.clone()),
            tx,
            published: HashMap::new(),
            interrupted: false,
            heard: false,
        }
    }

    /// Takes fred's messages as soon as they come (so that its channels do
    /// not overflow) and hands events over as the consumer takes them.
    pub(super) async fn run(mut self, sub: SubscriberClient, mut ch: Channels) {
        let mut retire = ch.retire.take();
        // Waiting for the consumer to leave borrows the sender: not `self`'s,
        // which the handlers change.
        let tx = self.tx.clone();
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ping = std::pin::pin!(None);
        loop {
            tokio::select! {
                biased;
                _ = tx.closed() => break,
                _ = stopped(&mut ch.stop) => break,
                _ = retired(&mut retire) => break,
                _ = beat.tick(), if ping.is_none() => {
                    self.heard = false;
                    ping.set(Some(heartbeat(sub.clone())));
                }
                answered = async { ping.as_mut().as_pin_mut().expect("a ping in flight").await }, if ping.is_some() => {
                    ping.set(None);
                    // fred keeps the connection (a frozen server closes none):
                    // once it answers again, that is said too.
                    let queued = !ch.values.is_empty() || !ch.keyspace.is_empty() || !ch.invalidations.is_empty();
                    if answered || self.heard || queued {
                        self.answered_again();
                    } else {
                        self.interrupt(None, None);
                    }
                }
                // Before reconnections: fred sends a loss before the
                // reconnection that ends it.
                e = ch.errors.recv() => match e {
                    Ok((e, server)) => self.interrupt(Some(e), server),
                    // Errors were dropped: the connection broke at least once.
                    Err(broadcast::error::RecvError::Lagged(_)) => self.interrupt(None, None),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                // Then: what arrives after a reconnection is reported after the gap.
                r = ch.reconnects.recv() => match r {
                    Err(broadcast::error::RecvError::Closed) => break,
                    r => self.on_reconnect(r.ok(), &sub).await,
                },
                // Values before notifications (cheaper to hold than to read).
                m = ch.values.recv() => match m {
                    Ok(m) => self.on_value(m),
                    Err(broadcast::error::RecvError::Lagged(n)) => self.lost(n, &mut ch.values),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                e = ch.keyspace.recv() => match e {
                    Ok(e) => {
                        // fred's reader (another thread) may have handed
                        // over this write's value and its notification
                        // since the values channel was found empty above:
                        // the value is taken first, so that the
                        // notification claims it.
                        if !self.take_values(&mut ch.values) {
                            break;
                        }
                        self.on_keyspace(e);
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => self.lost(n, &mut ch.values),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                i = ch.invalidations.recv() => match i {
                    Ok(i) => self.on_invalidation(i),
                    Err(broadcast::error::RecvError::Lagged(n)) => self.lost(n, &mut ch.values),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                more = self.outbox.advance(), if self.outbox.busy() => {
                    if !more {
                        break;
                    }
                }
            }
        }
        let _ = sub.quit().await;
    }

    /// Takes every value fred has handed over so far. fred hands a write's
    /// value over before its notification, so once a notification is
    /// received its value is in the channel. False once fred closed it.
    fn take_values(&mut self, values: &mut broadcast::Receiver<Message>) -> bool {
        loop {
            match values.try_recv() {
                Ok(m) => self.on_value(m),
                Err(broadcast::error::TryRecvError::Empty) => return true,
                Err(broadcast::error::TryRecvError::Lagged(n)) => self.lost(n, values),
                Err(broadcast::error::TryRecvError::Closed) => return false,
            }
        }
    }

    /// fred's channel overflowed: events were lost; say so, and start
    /// clean. Published values still queued may belong to notifications that
    /// were lost: dropped, so that none is taken for a later write (that
    /// write is read instead).
    fn lost(&mut self, n: u64, values: &mut broadcast::Receiver<Message>) {
        self.published.clear();
        while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = values.try_recv() {}
        self.outbox.push(Err(Error::watch_lagged(n)));
    }

    /// The consumer is too far behind: the outbox dropped what it held, and
    /// the values waiting for their notifications go too.
    fn check_held(&mut self) {
        if self.outbox.overflowed() {
            self.published.clear();
        }
    }

    /// fred reports every broken connection and every failed reconnect:
    /// the first of an outage tells the consumer at once that changes are
    /// no longer seen (not only once the server is back, when other
    /// clients may long have written). Events fred received before the
    /// loss still follow; the values they claim are kept until the
    /// reconnection.
    fn interrupt(&mut self, error: Option<RedisError>, server: Option<Server>) {
        if std::mem::replace(&mut self.interrupted, true) {
            return;
        }
        let server = server.map_or_else(|| self.store.target().address.clone(), |s| s.to_string());
        let interrupted = Error::watch_interrupted(format!("the connection to redis at {server} was lost"));
        let interrupted = match error {
            Some(e) => self.store.target().with_source(interrupted, e),
            None => interrupted,
        };
        self.outbox.push(Err(interrupted));
    }

    /// A server that did not answer in time answers again on the same
    /// connection (fred closed none): the interruption reported ends here.
    fn answered_again(&mut self) {
        if !std::mem::replace(&mut self.interrupted, false) {
            return;
        }
        self.published.clear();
        let msg = format!(
            "watch: redis at {} answers again; changes made while it did not may not have been seen",
            self.store.target().address
        );
        self.outbox.push(Err(Error::new(ErrorKind::Unavailable, msg)));
    }

    /// Pub/sub keeps nothing for a connection that is gone: say that changes
    /// may have been missed, so that the watcher can read afresh, and forget
    /// the values still expected from before. A restarted server may have
    /// notifications off again: switched on. A new connection tracks
    /// nothing: tracking is switched on again (before the report, so that
    /// changes after it are seen).
    async fn on_reconnect(&mut self, server: Option<Server>, sub: &SubscriberClient) {
        self.interrupted = false;
        self.published.clear();
        let server = server.map_or_else(|| "the server".to_owned(), |s| s.to_string());
        let mut msg = format!(
            "watch: the connection to {server} was re-established; changes made while it was down were not seen"
        );
        let renewed = match &self.feed {
            Feed::Tracking { prefix } => tracking::start(&self.store, sub, prefix).await,
            Feed::Keyspace { .. } => notifications::renew(&self.store, self.config.clone()).await,
        };
        if let Err(e) = renewed {
            msg = format!("{msg}; {e}");
        }
        self.outbox.push(Err(Error::new(ErrorKind::Unavailable, msg)));
    }

    /// Forgets published values when the Cluster topology changed.
    fn check_generation(&mut self) {
        if let Some(owned) = &self.owned {
            let now = owned.generation();
            if now != self.generation {
                self.generation = now;
                self.published.clear();
            }
        }
    }

    fn on_value(&mut self, message: Message) {
        self.heard = true;
        self.check_generation();
        let head = format!("{VALUE_CHANNEL}{}__:", self.db);
        let Some(key) = message.channel.strip_prefix(head.as_str()) else { return };
        if let Some(owned) = &self.owned
            && !owned.has(fred::util::redis_keyslot(key.as_bytes()))
        {
            return;
        }
        let Some(bytes) = message.value.into_bytes() else { return };
        let change = match bytes.first() {
            Some(b's') => Published::Set(bytes.slice(1..)),
            Some(b'd') => Published::Removed,
            _ => return,
        };
        self.published.entry(key.to_owned()).or_default().push_back((Instant::now(), change));
    }

    /// The published change at the front for `key`, when `matches` it
    /// (dropping values nobody claimed in time).
    fn claim(&mut self, key: &str, matches: fn(&Published) -> bool) -> Option<Published> {
        let queue = self.published.get_mut(key)?;
        while queue.front().is_some_and(|(at, _)| at.elapsed() > UNCLAIMED) {
            queue.pop_front();
        }
        let claimed = if queue.front().is_some_and(|(_, p)| matches(p)) { queue.pop_front() } else { None };
        if queue.is_empty() {
            self.published.remove(key);
        }
        claimed.map(|(_, p)| p)
    }

    /// Names pushed by `CLIENT TRACKING` (several changes to a key between
    /// two pushes come as one name). None at all: the database was flushed.
    fn on_invalidation(&mut self, invalidation: Invalidation) {
        self.heard = true;
        if invalidation.keys.is_empty() {
            let msg = format!("redis at {} dropped every key (FLUSHDB or FLUSHALL)", invalidation.server);
            self.outbox.push(Err(Error::watch_interrupted(msg)));
            return;
        }
        for key in invalidation.keys {
            // The ETag bookkeeping keys are the store's own, never reported.
            if let Some(key) = key.into_string().filter(|k| !etag::is_version_key(k)) {
                self.outbox.push(Ok(WatchEvent { key, kind: WatchKind::Changed }));
            }
        }
        self.check_held();
    }

    fn on_keyspace(&mut self, event: KeyspaceEvent) {
        self.heard = true;
        self.check_generation();
        // The ETag bookkeeping keys are the store's own, never reported.
        let Some(key) = event.key.into_string().filter(|k| !etag::is_version_key(k)) else { return };
        let kind = match event.operation.as_str() {
            "set" => match self.claim(&key, |p| matches!(p, Published::Set(_))) {
                Some(Published::Set(value)) => WatchKind::Set { etag: None, value: Json::from_stored(value) },
                _ => return self.read(key, false),
            },
            // Other writers' commands that leave a string value.
            "setrange" | "incrby" | "incrbyfloat" | "append" | "restore" | "rename_to" | "copy_to"
            | "move_to" => {
                return self.read(key, false);
            }
            "del" => match self.claim(&key, |p| matches!(p, Published::Removed)) {
                Some(_) => WatchKind::Removed,
                // In Cluster a key moving to another node is deleted here
                // after it arrived there: whether it is gone is read.
                None if self.owned.is_some() => return self.read(key, true),
                None => WatchKind::Removed,
            },
            "evicted" | "rename_from" | "move_from" => WatchKind::Removed,
            "expired" => WatchKind::Expired,
            _ => return,
        };
        self.outbox.push(Ok(WatchEvent { key, kind }));
        self.check_held();
    }

    /// Reads the key's value now (a write of another client, or a remove in
    /// Cluster). A value gone again by then is reported by the removal's own
    /// notification, which follows, unless `removed`: then it is this one.
    /// A key still there after a remove in Cluster moved to another node:
    /// nothing to report here, its later changes come from that node, and
    /// reporting the value read could put it after a newer change from
    /// there (the nodes' streams are not ordered with each other).
    fn read(&mut self, key: String, removed: bool) {
        let store = self.store.clone();
        self.outbox.push_pending(Box::pin(async move {
            match entries::get_value(&store, &key).await {
                Ok(Some(_)) if removed => None,
                Ok(Some(value)) => Some(Ok(WatchEvent { key, kind: WatchKind::Set { etag: None, value } })),
                Ok(None) if removed => Some(Ok(WatchEvent { key, kind: WatchKind::Removed })),
                Ok(None) => None,
                Err(e) => Some(Err(e.with_key(key))),
            }
        }));
        self.check_held();
    }
}
