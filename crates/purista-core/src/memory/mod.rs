//! The in-memory store: every capability, and the reference semantics the
//! other backends are tested against.
mod data;
mod reaper;
mod shards;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::broadcast;
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};

use data::{Key, etag};
use reaper::Reaper;
use shards::Shards;

use crate::{
    Capabilities, ETag, Entry, Error, Json, Op, PutOptions, Result, StoreConfig, WatchEvent, WatchKind,
    WatchStream,
    backend::{Backend, Holds, Immediate, check_steps},
    validate_key,
};

/// How many watch events may queue for a slow watcher before it is told it
/// fell behind.
const WATCH_BUFFER: usize = 4096;

/// In-memory state store (PURISTA's `DefaultStateStore`): for development and
/// tests only, as nothing survives the process.
///
/// Clones share the same data. Values are immutable JSON bytes, so nothing a
/// caller holds aliases what the store holds. Expired entries are purged by a
/// background thread (started by the first TTL write, ended with the store),
/// so memory does not grow with them.
///
/// The calls made most (`get_value`, `get_state`, `set_state`,
/// `remove_state`, and the typed `get` and `set`) are also methods of the
/// type itself: on a `DefaultStateStore` they skip the boxed future every
/// call through `dyn StateStore` pays, with the same rules and results.
///
/// ```
/// use purista_core::{DefaultStateStore, StoreConfig, Json};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> purista_core::Result<()> {
/// let store = DefaultStateStore::with_state(
///     StoreConfig::default(),
///     [("greeting".to_string(), Json::encode("hello")?)],
/// )?;
/// assert_eq!(store.get::<String>("greeting").await?.as_deref(), Some("hello"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DefaultStateStore {
    shared: Arc<Shared>,
    config: StoreConfig,
}

#[derive(Debug)]
struct Shared {
    /// Keys spread over shards, each behind its own lock; a call on several
    /// keys locks all of their shards at once (see `shards.rs`).
    shards: Shards,
    events: broadcast::Sender<WatchEvent>,
    /// Open watch streams. `broadcast::Sender::receiver_count` would take the
    /// channel's one mutex on every write, which all shards would then share.
    watchers: Arc<AtomicUsize>,
    reaper: Mutex<Reaper>,
}

impl Shared {
    /// Whether a write must build an event. Read under the shard's lock, after
    /// a watcher counted itself, so that a watcher that reads the key after
    /// starting to watch sees either the write or its event.
    fn watched(&self) -> bool {
        self.watchers.load(Ordering::SeqCst) > 0
    }

    /// Sent under the shard's lock: events of one key go out in write order.
    fn emit(&self, key: &str, kind: WatchKind) {
        // Building the event costs a key copy: skip it when nobody watches.
        if self.watched() {
            let _ = self.events.send(WatchEvent { key: key.to_owned(), kind });
        }
    }
}

/// Counts a watch stream while it lives.
struct Watching(Arc<AtomicUsize>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Default for DefaultStateStore {
    fn default() -> Self {
        Self::new()
    }
}

impl DefaultStateStore {
    /// An empty store with the default config.
    pub fn new() -> Self {
        Self::from_config(StoreConfig::default())
    }

    /// An empty store with `config`.
    pub fn from_config(config: StoreConfig) -> Self {
        tracing::warn!("DefaultStateStore keeps state in memory: use it for development and tests only");
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        let shared =
            Shared { shards: Shards::default(), events, watchers: Arc::default(), reaper: Mutex::default() };
        DefaultStateStore { shared: Arc::new(shared), config }
    }

    /// A store holding `initial` values (keys as callers name them: the
    /// config's key prefix is applied).
    pub fn with_state(
        config: StoreConfig,
        initial: impl IntoIterator<Item = (String, Json)>,
    ) -> Result<Self> {
        let store = Self::from_config(config);
        for (key, value) in initial {
            validate_key(&key)?;
            let key = format!("{}{key}", store.config.key_prefix);
            let key = store.shared.shards.key(&key);
            store.shared.shards.write(key).put(key, value, None);
        }
        Ok(store)
    }

    /// Another handle on the same data, with its own config (its own flags
    /// and key prefix), as two services sharing one server would have.
    pub fn with_config(&self, config: StoreConfig) -> Self {
        DefaultStateStore { shared: self.shared.clone(), config }
    }

    /// Number of live entries (expired ones not yet purged are not counted).
    pub fn len(&self) -> usize {
        let all = self.shared.shards.read_all();
        all.iter().map(|shard| shard.entries().filter(|e| e.slot.live()).count()).sum()
    }

    /// Whether the store holds no live entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes under the shard's lock; the new version.
    fn put_value(&self, name: &str, value: Json, options: &PutOptions) -> Result<u64> {
        let (version, deadline) = {
            let (key, mut shard) = self.shared.shards.write_key(name);
            shard.check_put(key, &options.mode)?;
            let event = self.shared.watched().then(|| value.clone());
            let written = shard.put(key, value, options.ttl);
            if let Some(value) = event {
                self.shared.emit(name, WatchKind::Set { value, etag: Some(etag(written.0)) });
            }
            written
        };
        if let Some(deadline) = deadline {
            reaper::wake(&self.shared, deadline);
        }
        Ok(version)
    }

    /// Removes under the shard's lock, if `tag` (when given) matches.
    #[inline]
    fn delete(&self, name: &str, tag: Option<&ETag>) -> Result<()> {
        let (key, mut shard) = self.shared.shards.write_key(name);
        shard.check_delete(key, tag)?;
        if shard.delete(key) {
            self.shared.emit(name, WatchKind::Removed);
        }
        Ok(())
    }

    #[inline]
    fn read(&self, key: &str) -> Option<Json> {
        let key = self.shared.shards.key(key);
        self.shared.shards.read(key).live(key).map(|s| s.value.clone())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Lets the reaper see that the store is gone.
        self.reaper.get_mut().unpark();
    }
}

crate::direct_calls!(DefaultStateStore);

/// Reads, plain writes and removes never wait: `context.states` calls them without
/// a boxed future.
impl Immediate for DefaultStateStore {
    #[inline]
    fn get_value_now(&self, key: &str) -> Result<Option<Json>> {
        Ok(self.read(key))
    }

    #[inline]
    fn set_state_now(&self, key: &str, value: Json) -> Result<()> {
        // `set_state` drops the ETag: do not format one.
        self.put_value(key, value, &PutOptions::default()).map(drop)
    }

    #[inline]
    fn remove_state_now(&self, key: &str) -> Result<()> {
        self.delete(key, None)
    }
}

impl Backend for DefaultStateStore {
    fn name(&self) -> &str {
        "DefaultStateStore"
    }

    fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn with_config(&self, config: StoreConfig) -> Self {
        DefaultStateStore::with_config(self, config)
    }

    #[inline]
    fn capabilities(&self) -> Capabilities {
        Capabilities::all(Duration::from_millis(1))
    }

    #[inline]
    fn immediate(&self) -> Option<&dyn Immediate> {
        Some(self)
    }

    async fn get_state(&self, keys: &[&str]) -> Result<Vec<Option<Json>>> {
        if let [key] = keys {
            return Ok(vec![self.read(key)]);
        }
        // Every shard involved at once: one snapshot, as a transaction
        // writes all of its keys under the same locks.
        let keys: Vec<_> = keys.iter().map(|k| self.shared.shards.key(k)).collect();
        let held = self.shared.shards.read_many(&keys);
        Ok(keys.iter().map(|&k| held.shard(k).live(k).map(|s| s.value.clone())).collect())
    }

    async fn get_value(&self, key: &str) -> Result<Option<Json>> {
        self.get_value_now(key)
    }

    async fn get_entry(&self, key: &str) -> Result<Option<Entry>> {
        let key = self.shared.shards.key(key);
        let shard = self.shared.shards.read(key);
        Ok(shard.live(key).map(|s| Entry {
            value: s.value.clone(),
            etag: etag(s.version),
            expires_at: s.expires.map(|t| SystemTime::now() + t.saturating_duration_since(Instant::now())),
        }))
    }

    async fn put(&self, key: &str, value: Json, options: &PutOptions) -> Result<Option<ETag>> {
        self.put_value(key, value, options).map(|version| Some(etag(version)))
    }

    async fn set_state(&self, key: &str, value: Json) -> Result<()> {
        self.set_state_now(key, value)
    }

    async fn increment(&self, name: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        let (sum, deadline) = {
            let (key, mut shard) = self.shared.shards.write_key(name);
            let (sum, version, deadline) = shard.increment(key, delta, ttl)?;
            if self.shared.watched()
                && let Some(slot) = shard.live(key)
            {
                // The value just stored, not encoded a second time.
                self.shared
                    .emit(name, WatchKind::Set { value: slot.value.clone(), etag: Some(etag(version)) });
            }
            (sum, deadline)
        };
        if let Some(deadline) = deadline {
            reaper::wake(&self.shared, deadline);
        }
        Ok(sum)
    }

    async fn remove(&self, name: &str, tag: Option<&ETag>) -> Result<()> {
        self.delete(name, tag)
    }

    async fn transaction(&self, ops: Vec<Op>) -> Result<()> {
        // Every shard involved, held until the last step: all or nothing,
        // and no reader sees half of it.
        let shards = &self.shared.shards;
        let keys: Vec<_> = ops.iter().map(|op| shards.key(op.key())).collect();
        let mut held = shards.write_many(&keys);
        // Every condition first, against what the earlier steps leave.
        check_steps(&ops, |i, _| match held.shard(keys[i]).live(keys[i]) {
            Some(slot) => Holds::Tag(slot.version.to_string()),
            None => Holds::Absent,
        })?;
        // Each key was hashed once, above; the steps take their names along.
        let hashes: Vec<u64> = keys.iter().map(|k| k.hash).collect();
        let watched = self.shared.watched();
        let mut earliest: Option<Instant> = None;
        for (op, hash) in ops.into_iter().zip(hashes) {
            match op {
                Op::Put { key, value, options } => {
                    let event = watched.then(|| value.clone());
                    let k = Key { name: &key, hash };
                    let (version, deadline) = held.shard_mut(k).put(k, value, options.ttl);
                    earliest = reaper::sooner(earliest, deadline);
                    if let Some(value) = event {
                        self.shared.emit(&key, WatchKind::Set { value, etag: Some(etag(version)) });
                    }
                }
                Op::Remove { key, .. } => {
                    let k = Key { name: &key, hash };
                    if held.shard_mut(k).delete(k) {
                        self.shared.emit(&key, WatchKind::Removed);
                    }
                }
            }
        }
        drop(held);
        if let Some(deadline) = earliest {
            reaper::wake(&self.shared, deadline);
        }
        Ok(())
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let all = self.shared.shards.read_all();
        Ok(all
            .iter()
            .flat_map(|shard| shard.entries())
            .filter(|e| e.key.starts_with(prefix) && e.slot.live())
            .map(|e| e.key.to_string())
            .collect())
    }

    async fn watch(&self, prefix: &str) -> Result<WatchStream> {
        let prefix = prefix.to_owned();
        let events = BroadcastStream::new(self.shared.events.subscribe());
        // Counted after subscribing: a write that sees the count has a
        // receiver to send to.
        self.shared.watchers.fetch_add(1, Ordering::SeqCst);
        let counted = Watching(self.shared.watchers.clone());
        let stream = events.filter_map(move |event| {
            let _counted = &counted;
            std::future::ready(match event {
                Ok(e) if e.key.starts_with(&prefix) => Some(Ok(e)),
                Ok(_) => None,
                Err(BroadcastStreamRecvError::Lagged(n)) => Some(Err(Error::watch_lagged(n))),
            })
        });
        Ok(Box::pin(stream))
    }

    async fn destroy(&self) -> Result<()> {
        Ok(())
    }
}
