//! The cache itself: bounded entries, and the generations that keep a read
//! which raced a write from being cached.
//!
//! A read that misses takes a [`Ticket`] (its key's stripe generation)
//! before asking the store, and caches the answer only if the generation is
//! unchanged. Invalidating bumps the generation and drops the entry under the
//! stripe's lock, and admitting compares and inserts under the same lock, so
//! an answer read before a write can never be cached after that write's
//! invalidation. Stripes, not one generation per key: memory stays bounded,
//! and a write only costs a concurrent miss on another key of its stripe
//! its insert.

use std::{
    hash::BuildHasher,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use moka::{notification::RemovalCause, policy::Expiry, sync::Cache};
use parking_lot::Mutex;

use super::{
    metrics::{CacheMetrics, Counters},
    options::CacheOptions,
};
use crate::Json;

/// Stripes of generations; a power of two.
const STRIPES: usize = 1024;

/// moka refuses expiries past 1000 years; no entry needs more than this.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A cached answer: a value, or "missing".
#[derive(Debug, Clone)]
pub(super) struct Slot {
    value: Option<Json>,
    /// How long the entry may be served from its insertion; `None`: until
    /// invalidated or evicted.
    life: Option<Duration>,
}

/// A miss's claim to cache its answer (see the module doc).
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket {
    stripe: usize,
    generation: u64,
}

/// Entries live as long as their slot says, counted from each insert.
struct SlotExpiry;

impl Expiry<String, Slot> for SlotExpiry {
    fn expire_after_create(&self, _: &String, slot: &Slot, _: Instant) -> Option<Duration> {
        slot.life.map(|l| l.min(FOREVER))
    }
    fn expire_after_update(
        &self,
        _: &String,
        slot: &Slot,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        slot.life.map(|l| l.min(FOREVER))
    }
}

pub(super) struct Near {
    // foldhash: hits hash every key, and SipHash was a large part of a hit.
    cache: Cache<String, Slot, foldhash::fast::RandomState>,
    stripes: Box<[Mutex<u64>]>,
    /// False while the change feed is interrupted: no hit is served and no
    /// answer cached until it is back.
    serving: AtomicBool,
    hasher: foldhash::fast::FixedState,
    max_bytes: u64,
    pub(super) counters: Arc<Counters>,
}

impl std::fmt::Debug for Near {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the cached values: they are user data.
        f.debug_struct("Near")
            .field("serving", &self.serving)
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

/// Bytes an entry costs: its key and JSON text.
fn bytes_of(key: &str, slot: &Slot) -> u64 {
    (key.len() + slot.value.as_ref().map_or(0, |v| v.as_bytes().len())) as u64
}

impl Near {
    pub(super) fn new(options: &CacheOptions) -> Self {
        let counters = Arc::new(Counters::default());
        // Both bounds in one weight: each entry weighs its bytes but at least
        // max_bytes / max_entries, so neither bound can be passed.
        let floor = (options.max_bytes / options.max_entries).max(1);
        let listener = {
            let counters = counters.clone();
            move |key: Arc<String>, slot: Slot, cause: RemovalCause| {
                counters.bytes.fetch_sub(bytes_of(&key, &slot) as i64, Ordering::Relaxed);
                match cause {
                    RemovalCause::Size => Counters::add(&counters.evictions, 1),
                    RemovalCause::Expired => Counters::add(&counters.expirations, 1),
                    RemovalCause::Explicit | RemovalCause::Replaced => {}
                }
            }
        };
        let cache = Cache::builder()
            .max_capacity(options.max_bytes)
            .weigher(move |key: &String, slot: &Slot| {
                u32::try_from(bytes_of(key, slot).max(floor)).unwrap_or(u32::MAX)
            })
            .expire_after(SlotExpiry)
            .eviction_listener(listener)
            .build_with_hasher(foldhash::fast::RandomState::default());
        Near {
            cache,
            stripes: (0..STRIPES).map(|_| Mutex::new(0)).collect(),
            serving: AtomicBool::new(true),
            hasher: foldhash::fast::FixedState::default(),
            max_bytes: options.max_bytes,
            counters,
        }
    }

    fn stripe(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) & (STRIPES - 1)
    }

    /// The cached answer, if the cache is serving and holds one.
    pub(super) fn lookup(&self, key: &str) -> Option<Option<Json>> {
        if !self.serving.load(Ordering::SeqCst) {
            return None;
        }
        self.cache.get(key).map(|slot| slot.value)
    }

    /// A claim to cache what the store is about to answer; `None` while the
    /// feed is interrupted (the answer is then not cached).
    pub(super) fn ticket(&self, key: &str) -> Option<Ticket> {
        if !self.serving.load(Ordering::SeqCst) {
            return None;
        }
        let stripe = self.stripe(key);
        Some(Ticket { stripe, generation: *self.stripes[stripe].lock() })
    }

    /// Caches `value` for `life` if nothing invalidated `key` since `ticket`.
    pub(super) fn admit(&self, key: &str, ticket: Ticket, value: Option<Json>, life: Option<Duration>) {
        let slot = Slot { value, life };
        let bytes = bytes_of(key, &slot);
        if bytes > self.max_bytes {
            return;
        }
        let generation = self.stripes[ticket.stripe].lock();
        if *generation == ticket.generation && self.serving.load(Ordering::SeqCst) {
            self.counters.bytes.fetch_add(bytes as i64, Ordering::Relaxed);
            self.cache.insert(key.to_owned(), slot);
        }
    }

    /// Drops `key` after a write, and keeps any read in flight on it from
    /// caching what it read before the write.
    pub(super) fn invalidate(&self, key: &str) {
        let mut generation = self.stripes[self.stripe(key)].lock();
        *generation += 1;
        self.cache.invalidate(key);
        Counters::add(&self.counters.invalidations, 1);
    }

    /// The feed is interrupted: stop serving, then empty the cache.
    pub(super) fn suspend(&self) {
        self.serving.store(false, Ordering::SeqCst);
        self.bump_all();
        self.clear();
        Counters::add(&self.counters.resets, 1);
    }

    /// The feed is back (subscribed again): reads that started before cannot
    /// cache what they read, later ones can.
    pub(super) fn resume(&self) {
        self.bump_all();
        self.clear();
        self.serving.store(true, Ordering::SeqCst);
    }

    /// Whether hits are served (false while the feed is interrupted).
    pub(super) fn serving(&self) -> bool {
        self.serving.load(Ordering::SeqCst)
    }

    fn bump_all(&self) {
        for stripe in self.stripes.iter() {
            *stripe.lock() += 1;
        }
    }

    /// Entry by entry rather than `invalidate_all`, so that the eviction
    /// listener keeps `bytes` exact. No entry can be added meanwhile: the
    /// cache is not serving and every generation was bumped.
    fn clear(&self) {
        for (key, _) in self.cache.iter() {
            self.cache.invalidate(key.as_str());
        }
    }

    pub(super) fn metrics(&self) -> CacheMetrics {
        self.cache.run_pending_tasks();
        self.counters.snapshot(self.cache.entry_count())
    }
}
