//! The in-memory store: every capability, and the reference semantics the
//! other backends are tested against.
mod data;

use std::{
    sync::{Arc, Weak},
    thread::Thread,
    time::{Duration, Instant, SystemTime},
};

use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};

use data::{Data, Slot, etag};

use crate::{
    Capabilities, ETag, Entry, Error, Json, Op, PutOptions, Result, StoreConfig, WatchEvent, WatchKind,
    WatchStream,
    backend::{Backend, Holds, check_steps},
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
/// ```
/// use purista_core::{DefaultStateStore, StateStoreExt, StoreConfig, Json};
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
    data: RwLock<Data>,
    events: broadcast::Sender<WatchEvent>,
    /// The thread purging expired entries, started by the first TTL write.
    /// A thread rather than a task: the store must not depend on the runtime
    /// that happened to write first outliving it.
    reaper: Mutex<Option<Thread>>,
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
        let shared = Shared { data: RwLock::default(), events, reaper: Mutex::new(None) };
        DefaultStateStore { shared: Arc::new(shared), config }
    }

    /// A store holding `initial` values (keys as callers name them: the
    /// config's key prefix is applied).
    pub fn with_state(
        config: StoreConfig,
        initial: impl IntoIterator<Item = (String, Json)>,
    ) -> Result<Self> {
        let store = Self::from_config(config);
        {
            let mut data = store.shared.data.write();
            for (key, value) in initial {
                validate_key(&key)?;
                data.version += 1;
                let slot = Slot { value, version: data.version, expires: None };
                data.map.insert(format!("{}{key}", store.config.key_prefix).into(), slot);
            }
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
        self.shared.data.read().map.values().filter(|s| s.live()).count()
    }

    /// Whether the store holds no live entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes under the lock; the new version.
    fn put_value(&self, key: &str, value: Json, options: &PutOptions) -> Result<u64> {
        let event = (self.shared.events.receiver_count() > 0).then(|| value.clone());
        let (version, earliest) = {
            let mut data = self.shared.data.write();
            data.check_put(key, &options.mode)?;
            let written = data.put(key, value, options.ttl);
            if let Some(value) = event {
                self.emit(key, WatchKind::Set { value, etag: Some(etag(written.0)) });
            }
            written
        };
        if options.ttl.is_some() {
            self.wake_reaper(earliest);
        }
        Ok(version)
    }

    fn emit(&self, key: &str, kind: WatchKind) {
        // Building the event costs a key copy: skip it when nobody watches.
        if self.shared.events.receiver_count() > 0 {
            let _ = self.shared.events.send(WatchEvent { key: key.to_owned(), kind });
        }
    }

    /// Starts the reaper on the first TTL write, or wakes it when a deadline
    /// earlier than the one it sleeps towards appears.
    fn wake_reaper(&self, earliest: bool) {
        let mut reaper = self.shared.reaper.lock();
        match &*reaper {
            Some(thread) if earliest => thread.unpark(),
            Some(_) => {}
            None => {
                let shared = Arc::downgrade(&self.shared);
                // If no thread can be had, expired entries are still hidden
                // from reads and dropped when overwritten, just not purged.
                let spawned =
                    std::thread::Builder::new().name("purista-store-reaper".into()).spawn(|| reap(shared));
                *reaper = spawned.ok().map(|h| h.thread().clone());
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Lets the reaper see that the store is gone.
        if let Some(thread) = self.reaper.get_mut() {
            thread.unpark();
        }
    }
}

/// Removes entries as their deadlines pass and reports them as expired.
/// Holds the store weakly so that dropping the store ends it.
fn reap(shared: Weak<Shared>) {
    loop {
        let next = {
            let Some(shared) = shared.upgrade() else { return };
            let now = Instant::now();
            let mut data = shared.data.write();
            while let Some(entry) = data.expiries.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let ((_, version), key) = entry.remove_entry();
                if data.map.get(&key).is_some_and(|s| s.version == version) {
                    data.map.remove(&key);
                    if shared.events.receiver_count() > 0 {
                        let _ = shared.events.send(WatchEvent { key: key.into(), kind: WatchKind::Expired });
                    }
                }
            }
            data.expiries.first_key_value().map(|((t, _), _)| *t)
        };
        // An unpark between the purge and here makes the park return at once.
        match next {
            Some(deadline) => std::thread::park_timeout(deadline.saturating_duration_since(Instant::now())),
            None => std::thread::park(),
        }
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

    fn capabilities(&self) -> Capabilities {
        Capabilities::all(Duration::from_millis(1))
    }

    async fn get_state(&self, keys: &[&str]) -> Result<Vec<Option<Json>>> {
        let data = self.shared.data.read();
        Ok(keys.iter().map(|k| data.live(k).map(|s| s.value.clone())).collect())
    }

    async fn get_value(&self, key: &str) -> Result<Option<Json>> {
        Ok(self.shared.data.read().live(key).map(|s| s.value.clone()))
    }

    async fn get_entry(&self, key: &str) -> Result<Option<Entry>> {
        let data = self.shared.data.read();
        Ok(data.live(key).map(|s| Entry {
            value: s.value.clone(),
            etag: etag(s.version),
            expires_at: s.expires.map(|t| SystemTime::now() + t.saturating_duration_since(Instant::now())),
        }))
    }

    async fn put(&self, key: &str, value: Json, options: &PutOptions) -> Result<Option<ETag>> {
        self.put_value(key, value, options).map(|version| Some(etag(version)))
    }

    async fn set_state(&self, key: &str, value: Json) -> Result<()> {
        // `set_state` drops the ETag: do not format one.
        self.put_value(key, value, &PutOptions::default()).map(drop)
    }

    async fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        let (sum, earliest) = {
            let mut data = self.shared.data.write();
            let (sum, version, earliest) = data.increment(key, delta, ttl)?;
            if let Some(slot) = data.live(key).filter(|_| self.shared.events.receiver_count() > 0) {
                // The value just stored, not encoded a second time.
                self.emit(key, WatchKind::Set { value: slot.value.clone(), etag: Some(etag(version)) });
            }
            (sum, earliest)
        };
        if ttl.is_some() {
            self.wake_reaper(earliest);
        }
        Ok(sum)
    }

    async fn remove(&self, key: &str, tag: Option<&ETag>) -> Result<()> {
        let mut data = self.shared.data.write();
        data.check_delete(key, tag)?;
        if data.delete(key) {
            self.emit(key, WatchKind::Removed);
        }
        Ok(())
    }

    async fn transaction(&self, ops: Vec<Op>) -> Result<()> {
        let mut data = self.shared.data.write();
        // Every condition first, against what the earlier steps leave:
        // all or nothing.
        check_steps(&ops, |key| match data.live(key) {
            Some(slot) => Holds::Tag(slot.version.to_string()),
            None => Holds::Absent,
        })?;
        let mut wake = false;
        for op in ops {
            match op {
                Op::Put { key, value, options } => {
                    let event = (self.shared.events.receiver_count() > 0).then(|| value.clone());
                    let (version, earliest) = data.put(&key, value, options.ttl);
                    wake |= earliest;
                    if let Some(value) = event {
                        self.emit(&key, WatchKind::Set { value, etag: Some(etag(version)) });
                    }
                }
                Op::Remove { key, .. } => {
                    if data.delete(&key) {
                        self.emit(&key, WatchKind::Removed);
                    }
                }
            }
        }
        let has_ttl = !data.expiries.is_empty();
        drop(data);
        if has_ttl {
            self.wake_reaper(wake);
        }
        Ok(())
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let data = self.shared.data.read();
        Ok(data
            .map
            .iter()
            .filter(|(k, s)| k.starts_with(prefix) && s.live())
            .map(|(k, _)| k.to_string())
            .collect())
    }

    async fn watch(&self, prefix: &str) -> Result<WatchStream> {
        let prefix = prefix.to_owned();
        let stream = BroadcastStream::new(self.shared.events.subscribe()).filter_map(move |event| {
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
