//! Whether writes must publish their values: only while someone watches.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use fred::interfaces::PubsubInterface;

use crate::RedisStateStore;

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
