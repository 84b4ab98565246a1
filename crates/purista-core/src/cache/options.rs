//! What a [`CachedStore`](super::CachedStore) may hold, and for how long.

use std::time::Duration;

use crate::{Error, ErrorKind, Result};

/// Bounds of a near cache.
///
/// ```
/// use std::time::Duration;
/// use purista_core::CacheOptions;
/// let options = CacheOptions::default().max_entries(50_000).max_bytes(16 << 20);
/// assert_eq!(options.max_age, None);
/// let dapr = CacheOptions::default().max_age(Duration::from_secs(2));
/// assert_eq!(dapr.max_age, Some(Duration::from_secs(2)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheOptions {
    /// The most entries held ("missing" answers included).
    pub max_entries: u64,
    /// The most bytes held, counting each entry's key and JSON text.
    pub max_bytes: u64,
    /// The longest an entry is served, however quiet the change feed. Needed
    /// to cache at all on a store without a change feed (Dapr): reads may then
    /// miss another instance's write for up to this long.
    pub max_age: Option<Duration>,
    /// How long the store's change feed may take to report another instance's
    /// write: the bound declared as [`Capabilities::stale_reads`](crate::Capabilities),
    /// raised to the store's `watch_stall` (how long its watch may take to
    /// notice a silent server). Measured, not enforced: the feed is the
    /// server's (a Redis or NATS watch), and reports within milliseconds when
    /// the server is healthy.
    pub max_feed_delay: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            max_entries: 100_000,
            max_bytes: 64 << 20,
            max_age: None,
            max_feed_delay: Duration::from_secs(1),
        }
    }
}

impl CacheOptions {
    /// Sets [`max_entries`](Self::max_entries).
    pub fn max_entries(mut self, n: u64) -> Self {
        self.max_entries = n;
        self
    }
    /// Sets [`max_bytes`](Self::max_bytes).
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = n;
        self
    }
    /// Sets [`max_age`](Self::max_age).
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }
    /// Sets [`max_feed_delay`](Self::max_feed_delay).
    pub fn max_feed_delay(mut self, delay: Duration) -> Self {
        self.max_feed_delay = delay;
        self
    }

    /// Zero bounds would cache nothing while claiming a cache.
    pub(super) fn check(&self) -> Result<()> {
        let bad = |what: &str| {
            Err(Error::new(ErrorKind::InvalidArgument, format!("cache {what} must be above zero")))
        };
        if self.max_entries == 0 {
            return bad("max_entries");
        }
        if self.max_bytes == 0 {
            return bad("max_bytes");
        }
        if self.max_age.is_some_and(|a| a.is_zero()) {
            return bad("max_age");
        }
        Ok(())
    }
}
