//! `watch` on keyspace notifications: one subscriber connection per node
//! (every primary in Cluster mode, followed as the topology changes),
//! re-subscribed by fred after reconnects.
//!
//! A watcher converges: the last event it yields for a key matches the key's
//! final state, and it loses nothing unless it yields an error saying so.
//! Keyspace notifications (every writer, expiry) and the values this crate's
//! writes publish come on two fred channels, so their order is lost; the
//! notifications decide the order and the published values are only looked
//! up for them (a write's `PUBLISH` comes right before its notification;
//! fred hands the value over first, so every value handed over so far is
//! taken before a notification is).

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    pin::Pin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use fred::{
    clients::{Client, SubscriberClient},
    interfaces::{ClientLike, ClusterInterface, ConfigInterface, EventInterface, PubsubInterface},
    types::{
        KeyspaceEvent, Message, Value,
        config::{Config, PerformanceConfig, Server, ServerConfig},
    },
};
use futures_util::{StreamExt, stream::FuturesOrdered};
use parking_lot::RwLock;
use purista_core::{Error, ErrorKind, Json, Result, WatchEvent, WatchKind, WatchStream};
use tokio::sync::{broadcast, mpsc, oneshot, watch as signal};
use tokio_stream::wrappers::ReceiverStream;

use crate::{RedisStateStore, list::escape_glob, scripts::VALUE_CHANNEL};

/// Slot ranges a Cluster node owns.
type SlotRanges = Vec<(u16, u16)>;

/// Events handed to a slow consumer before its watcher holds them back.
const CHANNEL: usize = 256;
/// Events a watcher holds for a slow consumer before it drops them and says so.
const HELD: usize = 4096;
/// Messages fred queues for a watcher between two of its turns (fred's
/// default, 32, is less than one transaction of 16 writes sends).
const BROADCAST: usize = 1024;
/// A published value not claimed by its notification within this time
/// belongs to none (its write failed after publishing): dropped.
const UNCLAIMED: Duration = Duration::from_secs(10);
/// How often a Cluster watcher asks for the topology (fred's own topology
/// changes wake it earlier).
const TOPOLOGY_POLL: Duration = Duration::from_secs(1);
/// The notification classes `watch` needs: keyspace channel, generic (del),
/// string (set), expired, evicted.
const NEEDED: [char; 5] = ['K', 'g', '$', 'x', 'e'];

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

pub(crate) async fn subscribe(store: &RedisStateStore, prefix: &str) -> Result<WatchStream> {
    let stop = store.watches().stop.subscribe();
    if *stop.borrow() {
        let msg = format!("redis at {}: the store was destroyed", store.target().address);
        return Err(Error::new(ErrorKind::Unavailable, msg));
    }
    let escaped = escape_glob(prefix);
    let db = store.db();
    let (tx, rx) = mpsc::channel(CHANNEL);
    let watch = Watch {
        store: store.detached(),
        patterns: vec![format!("__keyspace@{db}__:{escaped}*"), format!("{VALUE_CHANNEL}{db}__:{escaped}*")],
        tx,
        stop,
    };
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
    patterns: Vec<String>,
    tx: mpsc::Sender<Result<WatchEvent>>,
    stop: signal::Receiver<bool>,
}

/// A running node watcher; dropping it stops a Cluster node (the follower
/// holds them).
struct NodeHandle {
    owned: Option<Arc<Owned>>,
    _retire: Option<oneshot::Sender<()>>,
}

/// The slots a Cluster node owns, as the topology follower last saw them.
struct Owned {
    slots: RwLock<SlotRanges>,
    /// Bumped on every topology change: the node forgets the published
    /// values it holds (they may belong to another node now).
    generation: AtomicU64,
}

/// Every primary with the slot ranges it owns.
fn primaries(base: &Client) -> Option<Vec<(Server, SlotRanges)>> {
    let state = base.cached_cluster_state()?;
    Some(
        state
            .unique_primary_nodes()
            .into_iter()
            .map(|server| {
                let slots =
                    state.slots().iter().filter(|s| s.primary == server).map(|s| (s.start, s.end)).collect();
                (server, slots)
            })
            .collect(),
    )
}

fn node_config(base: &Client, server: &Server) -> Config {
    Config { server: ServerConfig::Centralized { server: server.clone() }, ..base.client_config() }
}

impl Watch {
    /// Connects a subscriber to one node, makes sure notifications are on,
    /// subscribes, and starts its task.
    async fn start(&self, config: Config, slots: Option<SlotRanges>) -> Result<NodeHandle> {
        let base = self.store.pool().next();
        let perf = PerformanceConfig { broadcast_channel_capacity: BROADCAST, ..base.perf_config() };
        let sub = SubscriberClient::new(
            config.clone(),
            Some(perf),
            Some(base.connection_config().clone()),
            base.client_reconnect_policy(),
        );
        let target = self.store.target();
        let opened = async {
            sub.init().await.map_err(|e| target.error(e, "connecting the watcher"))?;
            ensure_notifications(&self.store, &sub).await?;
            drop(sub.manage_subscriptions()); // runs detached until the client quits
            let receivers = (sub.keyspace_event_rx(), sub.message_rx());
            // One PSUBSCRIBE for both patterns: no write falls between them.
            sub.psubscribe(self.patterns.clone()).await.map_err(|e| target.error(e, "PSUBSCRIBE"))?;
            // fred resolves PSUBSCRIBE without waiting for the server's
            // confirmation (it drops it); a PING answered on the same
            // connection proves the server has subscribed, so a write made
            // once `watch` returns is seen.
            sub.ping::<Value>(None).await.map_err(|e| target.error(e, "PING after PSUBSCRIBE"))?;
            // Made after the first connection, so it hears only reconnections.
            Ok::<_, Error>((receivers.0, receivers.1, sub.reconnect_rx()))
        };
        let (keyspace, values, reconnects) = match opened.await {
            Ok(receivers) => receivers,
            Err(e) => {
                let _ = sub.quit().await;
                return Err(e);
            }
        };
        let owned =
            slots.map(|slots| Arc::new(Owned { slots: RwLock::new(slots), generation: AtomicU64::new(0) }));
        let (retire_tx, retire) = match owned {
            Some(_) => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let node = Node {
            store: self.store.clone(),
            config,
            db: self.store.db(),
            owned: owned.clone(),
            generation: 0,
            tx: self.tx.clone(),
            published: HashMap::new(),
            out: FuturesOrdered::new(),
            head: None,
        };
        let channels = Channels { keyspace, values, reconnects, retire, stop: self.stop.clone() };
        tokio::spawn(node.run(sub, channels));
        Ok(NodeHandle { owned, _retire: retire_tx })
    }

    /// Cluster mode: follows the primaries as they change (failover, a new
    /// primary, slots moving), subscribing to new ones and dropping those
    /// gone, and says so with an error: changes made on a node before it
    /// was watched were not seen.
    async fn follow(self, base: Client, mut nodes: HashMap<Server, NodeHandle>) {
        self.follow_with(&base, &mut nodes).await;
        let _ = base.quit().await;
    }

    async fn follow_with(&self, base: &Client, nodes: &mut HashMap<Server, NodeHandle>) {
        let mut changes = base.cluster_change_rx();
        let mut stop = self.stop.clone();
        let mut timer = tokio::time::interval(TOPOLOGY_POLL);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.tx.closed() => return,
                _ = stopped(&mut stop) => return,
                r = changes.recv() => {
                    if let Err(broadcast::error::RecvError::Closed) = r {
                        changes = base.cluster_change_rx();
                    }
                }
                _ = timer.tick() => {}
            }
            // Asks a node for the slots; a node that cannot answer now is
            // asked again at the next tick.
            if base.sync_cluster().await.is_err() {
                continue;
            }
            let Some(primaries) = primaries(base) else { continue };
            let mut changed: Vec<String> = Vec::new();
            let current: HashMap<Server, SlotRanges> = primaries.into_iter().collect();
            nodes.retain(|server, _| {
                let keep = current.contains_key(server);
                if !keep {
                    changed.push(format!("{server} is no longer a primary"));
                }
                keep
            });
            for (server, slots) in &current {
                match nodes.get(server).and_then(|n| n.owned.as_ref()) {
                    Some(owned) => {
                        if *owned.slots.read() != *slots {
                            *owned.slots.write() = slots.clone();
                            changed.push(format!("slots moved to or from {server}"));
                        }
                    }
                    None => match self.start(node_config(base, server), Some(slots.clone())).await {
                        Ok(node) => {
                            nodes.insert(server.clone(), node);
                            changed.push(format!("{server} became a primary"));
                        }
                        Err(e) => {
                            // Not recorded: tried again at the next tick.
                            let msg = format!(
                                "watch: {server} became a primary but cannot be watched; changes on it are not \
                                 seen: {e}"
                            );
                            if self.tx.send(Err(Error::new(ErrorKind::Unavailable, msg))).await.is_err() {
                                return;
                            }
                        }
                    },
                }
            }
            if changed.is_empty() {
                continue;
            }
            for node in nodes.values() {
                if let Some(owned) = &node.owned {
                    owned.generation.fetch_add(1, Relaxed);
                }
            }
            let msg = format!(
                "watch: the cluster topology changed ({}); changes made while it changed may not have been seen",
                changed.join("; ")
            );
            if self.tx.send(Err(Error::new(ErrorKind::Unavailable, msg))).await.is_err() {
                return;
            }
        }
    }
}

/// What a node task listens to.
struct Channels {
    keyspace: broadcast::Receiver<KeyspaceEvent>,
    values: broadcast::Receiver<Message>,
    reconnects: broadcast::Receiver<Server>,
    retire: Option<oneshot::Receiver<()>>,
    stop: signal::Receiver<bool>,
}

/// Resolves once the store's watchers are told to stop.
async fn stopped(stop: &mut signal::Receiver<bool>) {
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

/// A change a write of this crate published, waiting for its notification.
enum Published {
    Set(Bytes),
    Removed,
}

/// An event in the making: known at once, or read from the server first.
type Pending = Pin<Box<dyn Future<Output = Option<Result<WatchEvent>>> + Send>>;

/// The watcher of one node.
struct Node {
    store: RedisStateStore,
    config: Config,
    db: u8,
    /// Slot ranges this node owns (Cluster mode), to take each published
    /// value from one node only (PUBLISH reaches every node).
    owned: Option<Arc<Owned>>,
    generation: u64,
    tx: mpsc::Sender<Result<WatchEvent>>,
    /// Published changes per key, oldest first, not yet claimed by their
    /// notification.
    published: HashMap<String, VecDeque<(Instant, Published)>>,
    /// Events in notification order (reads run concurrently).
    out: FuturesOrdered<Pending>,
    /// The next event to hand over, once the consumer has room.
    head: Option<Result<WatchEvent>>,
}

impl Node {
    /// Takes fred's messages as soon as they come (so that its channels do
    /// not overflow) and hands events over as the consumer takes them.
    async fn run(mut self, sub: SubscriberClient, mut ch: Channels) {
        let mut retire = ch.retire.take();
        // A permit borrows the sender: not `self`'s, which the handlers change.
        let tx = self.tx.clone();
        loop {
            tokio::select! {
                biased;
                _ = tx.closed() => break,
                _ = stopped(&mut ch.stop) => break,
                _ = retired(&mut retire) => break,
                // First: what arrives after a reconnection is reported after the gap.
                r = ch.reconnects.recv() => match r {
                    Err(broadcast::error::RecvError::Closed) => break,
                    r => self.on_reconnect(r.ok()).await,
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
                ev = self.out.next(), if self.head.is_none() && !self.out.is_empty() => {
                    self.head = ev.flatten();
                }
                permit = tx.reserve(), if self.head.is_some() => match (permit, self.head.take()) {
                    (Ok(permit), Some(event)) => permit.send(event),
                    _ => break,
                },
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

    fn push(&mut self, event: Result<WatchEvent>) {
        self.out.push_back(Box::pin(std::future::ready(Some(event))));
    }

    /// Events were lost (fred's channel overflowed, or the consumer is
    /// `HELD` events behind): say so, and start clean. Published values
    /// still queued may belong to notifications that were lost: dropped, so
    /// that none is taken for a later write (that write is read instead).
    fn lost(&mut self, n: u64, values: &mut broadcast::Receiver<Message>) {
        self.published.clear();
        while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = values.try_recv() {}
        let msg = format!("watcher fell behind: {n} events were dropped; read the watched keys afresh");
        self.push(Err(Error::new(ErrorKind::Backend, msg)));
    }

    /// Pub/sub keeps nothing for a connection that is gone: say that changes
    /// may have been missed, so that the watcher can read afresh, and forget
    /// the values still expected from before. A restarted server may have
    /// notifications off again: switched on.
    async fn on_reconnect(&mut self, server: Option<Server>) {
        self.published.clear();
        let server = server.map_or_else(|| "the server".to_owned(), |s| s.to_string());
        let mut msg = format!(
            "watch: the connection to {server} was re-established; changes made while it was down were not seen"
        );
        if let Err(e) = renew_notifications(&self.store, self.config.clone()).await {
            msg = format!("{msg}; {e}");
        }
        self.push(Err(Error::new(ErrorKind::Unavailable, msg)));
    }

    /// Forgets published values when the Cluster topology changed.
    fn check_generation(&mut self) {
        if let Some(owned) = &self.owned {
            let now = owned.generation.load(Relaxed);
            if now != self.generation {
                self.generation = now;
                self.published.clear();
            }
        }
    }

    fn on_value(&mut self, message: Message) {
        self.check_generation();
        let head = format!("{VALUE_CHANNEL}{}__:", self.db);
        let Some(key) = message.channel.strip_prefix(head.as_str()) else { return };
        if let Some(owned) = &self.owned {
            let slot = fred::util::redis_keyslot(key.as_bytes());
            if !owned.slots.read().iter().any(|(a, b)| (*a..=*b).contains(&slot)) {
                return;
            }
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

    fn on_keyspace(&mut self, event: KeyspaceEvent) {
        self.check_generation();
        // The ETag bookkeeping keys are the store's own, never reported.
        let Some(key) = event.key.into_string().filter(|k| !crate::etag::is_version_key(k)) else { return };
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
        self.push(Ok(WatchEvent { key, kind }));
        self.check_held();
    }

    /// Reads the key's value now (a write of another client, or a remove in
    /// Cluster). A value gone again by then is reported by the removal's own
    /// notification, which follows, unless `removed`: then it is this one.
    fn read(&mut self, key: String, removed: bool) {
        let store = self.store.clone();
        self.out.push_back(Box::pin(async move {
            match crate::entries::get_value(&store, &key).await {
                Ok(Some(value)) => Some(Ok(WatchEvent { key, kind: WatchKind::Set { etag: None, value } })),
                Ok(None) if removed => Some(Ok(WatchEvent { key, kind: WatchKind::Removed })),
                Ok(None) => None,
                Err(e) => Some(Err(e.with_key(key))),
            }
        }));
        self.check_held();
    }

    /// The consumer is too far behind: drop what is held, and say so.
    fn check_held(&mut self) {
        if self.out.len() > HELD {
            let n = self.out.len() as u64 + u64::from(self.head.is_some());
            self.out = FuturesOrdered::new();
            self.head = None;
            self.published.clear();
            let msg = format!("watcher fell behind: {n} events were dropped; read the watched keys afresh");
            self.push(Err(Error::new(ErrorKind::Backend, msg)));
        }
    }
}

/// Switches notifications on over a short-lived connection (the
/// subscriber's own accepts only pub/sub commands once subscribed).
async fn renew_notifications(store: &RedisStateStore, config: Config) -> Result<()> {
    let base = store.pool().next();
    let client = Client::new(config, Some(base.perf_config()), Some(base.connection_config().clone()), None);
    let target = store.target();
    client.init().await.map_err(|e| target.error(e, "connecting to check keyspace notifications"))?;
    let done = ensure_notifications(store, &client).await;
    let _ = client.quit().await;
    done
}

/// Switches on the notification classes `watch` needs, or explains how to.
async fn ensure_notifications<C: ConfigInterface>(store: &RedisStateStore, client: &C) -> Result<()> {
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

/// What the store knows about watchers, to let upserts without TTL be one
/// `MSET` (over 10 times cheaper for the server than the script) when nobody
/// needs the value published.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    /// This process watches through this store: always publish.
    local: AtomicBool,
    /// Someone holds a pattern subscription (`PUBSUB NUMPAT > 0`), as of
    /// `checked` (ms since `since`; 0 = never).
    remote: AtomicBool,
    checked: AtomicU64,
    since: OnceLock<Instant>,
}

/// How stale the `PUBSUB NUMPAT` answer may be. A watcher in another process
/// started within this window sees this store's upserts the way it sees any
/// other client's writes (keyspace notification, then `GET`).
const WATCHERS_REFRESH: Duration = Duration::from_millis(500);

impl Watchers {
    /// From now on every write of this process publishes its value.
    pub(crate) fn watching_here(&self) {
        self.local.store(true, Relaxed);
    }

    /// Whether a write must publish its value for watchers: always in
    /// Cluster (pattern subscriptions are per node) or when this process
    /// watches, else when the server reported pattern subscribers at most
    /// [`WATCHERS_REFRESH`] ago.
    pub(crate) async fn any(&self, store: &RedisStateStore) -> bool {
        if store.is_cluster() || self.local.load(Relaxed) {
            return true;
        }
        let since = *self.since.get_or_init(Instant::now);
        let now = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
        let checked = self.checked.load(Relaxed);
        if checked != 0 && now - checked.min(now) < WATCHERS_REFRESH.as_millis() as u64 {
            return self.remote.load(Relaxed);
        }
        self.checked.store(now, Relaxed);
        // When the answer cannot be had, publish: correct, only slower.
        let remote = store.pool().next().pubsub_numpat::<i64>().await.map_or(true, |n| n > 0);
        self.remote.store(remote, Relaxed);
        remote
    }
}
