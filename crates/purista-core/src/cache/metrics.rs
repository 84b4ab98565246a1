//! What a user can read about a near cache: hits, misses, invalidations,
//! evictions, bytes.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A snapshot of a near cache's counters, from [`CachedStore::metrics`](super::CachedStore::metrics).
///
/// Counters only grow; `entries` and `bytes` are what the cache holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CacheMetrics {
    /// Names answered from the cache.
    pub hits: u64,
    /// Names answered by the store, then cached when allowed.
    pub misses: u64,
    /// Names answered by the store while the change feed was interrupted
    /// (nothing is served from or added to the cache then).
    pub bypassed: u64,
    /// Keys dropped because of a write: this instance's, or one the change
    /// feed reported.
    pub invalidations: u64,
    /// Times the whole cache was emptied because the change feed was
    /// interrupted (lag, reconnect, lost connection, end of stream).
    pub resets: u64,
    /// Entries dropped to stay within `max_entries` / `max_bytes`.
    pub evictions: u64,
    /// Entries dropped because they reached their key's expiry or `max_age`.
    pub expirations: u64,
    /// Entries held.
    pub entries: u64,
    /// Bytes held (keys and JSON text).
    pub bytes: u64,
}

/// The live counters behind [`CacheMetrics`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub bypassed: AtomicU64,
    pub invalidations: AtomicU64,
    pub resets: AtomicU64,
    pub evictions: AtomicU64,
    pub expirations: AtomicU64,
    pub bytes: AtomicI64,
}

impl Counters {
    pub(super) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self, entries: u64) -> CacheMetrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheMetrics {
            hits: get(&self.hits),
            misses: get(&self.misses),
            bypassed: get(&self.bypassed),
            invalidations: get(&self.invalidations),
            resets: get(&self.resets),
            evictions: get(&self.evictions),
            expirations: get(&self.expirations),
            entries,
            bytes: self.bytes.load(Ordering::Relaxed).max(0) as u64,
        }
    }
}
