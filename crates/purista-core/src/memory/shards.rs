//! The store's map split into shards, each behind its own lock, and the one
//! rule for taking several of them: always in ascending shard order, so that
//! two multi-key calls can never wait on each other.
//!
//! Why shards of `RwLock<HashMap>` and not a concurrent map (`papaya`, `scc`,
//! `dashmap`): a transaction must change several keys at once and
//! `get_state` must read several keys as one snapshot, which needs every
//! involved key held at the same time. `papaya` and `scc` cannot hold two
//! keys at once; `dashmap` can only through its unstable `raw-api`, and its
//! shards would not hold our deadlines and versions. Measured side by side
//! (`benches/default_store.rs`, groups `maps_*`, three runs on 2 busy cores,
//! 2026-11-30), against one locked map with the same hasher, 64 tasks doing
//! set + get: these shards 1.05–1.31×, `dashmap` 1.04–1.58×, `scc`
//! 1.22–1.46×, `papaya` 0.48–0.90×; one uncontended get costs about the same
//! in all (27–45 ns). The shards win neither by much nor always, but they are
//! the only candidate that gives transactions and snapshots, in this one file.

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::data::{Data, Hasher, Key};

/// Enough shards that writers on a many-core machine rarely meet, few enough
/// that a call over every shard (`list_keys`, the reaper) stays cheap. At most
/// 64: a set of shards is a `u64` mask.
pub(super) const SHARDS: usize = 32;
const _: () = assert!(SHARDS.is_power_of_two() && SHARDS <= 64);

/// One shard on its own cache lines, so that a writer on one shard does not
/// slow down readers of its neighbour.
#[derive(Debug)]
#[repr(align(128))]
struct Padded(RwLock<Data>);

#[derive(Debug)]
pub(super) struct Shards {
    shards: Box<[Padded]>,
    /// One hash per key and call: it picks the shard (bits 32 to 36) and
    /// probes the shard's table (which takes the low bits for the bucket and
    /// the top seven as the tag).
    hasher: Hasher,
}

impl Default for Shards {
    fn default() -> Self {
        // Versions are unique store-wide (an ETag of one key never matches
        // another): shard `i` counts `i + 1`, `i + 1 + SHARDS`, ...
        let hasher = Hasher::default();
        let shard = |i| Padded(RwLock::new(Data::new(i as u64 + 1, SHARDS as u64, hasher.clone())));
        Shards { shards: (0..SHARDS).map(shard).collect(), hasher }
    }
}

impl Shards {
    #[inline]
    pub(super) fn key<'k>(&self, name: &'k str) -> Key<'k> {
        Key::new(&self.hasher, name)
    }

    #[inline]
    fn index(key: Key<'_>) -> usize {
        (key.hash >> 32) as usize & (SHARDS - 1)
    }

    #[inline]
    pub(super) fn read(&self, key: Key<'_>) -> RwLockReadGuard<'_, Data> {
        self.shards[Self::index(key)].0.read()
    }

    #[inline]
    pub(super) fn write(&self, key: Key<'_>) -> RwLockWriteGuard<'_, Data> {
        self.shards[Self::index(key)].0.write()
    }

    /// `name`'s key and its shard's write lock: the start of every
    /// single-key write.
    #[inline]
    pub(super) fn write_key<'k>(&self, name: &'k str) -> (Key<'k>, RwLockWriteGuard<'_, Data>) {
        let key = self.key(name);
        (key, self.write(key))
    }

    /// The shard at `index` alone (the reaper, `len`).
    pub(super) fn write_at(&self, index: usize) -> RwLockWriteGuard<'_, Data> {
        self.shards[index].0.write()
    }

    /// Read locks on the shards of `keys`, taken in ascending order.
    pub(super) fn read_many(&self, keys: &[Key<'_>]) -> Held<RwLockReadGuard<'_, Data>> {
        self.hold(self.mask(keys), |l| l.read())
    }

    /// Write locks on the shards of `keys`, taken in ascending order.
    pub(super) fn write_many(&self, keys: &[Key<'_>]) -> Held<RwLockWriteGuard<'_, Data>> {
        self.hold(self.mask(keys), |l| l.write())
    }

    /// Read locks on every shard, in ascending order: one snapshot of all.
    pub(super) fn read_all(&self) -> Held<RwLockReadGuard<'_, Data>> {
        self.hold(u64::MAX >> (64 - SHARDS), |l| l.read())
    }

    fn mask(&self, keys: &[Key<'_>]) -> u64 {
        keys.iter().fold(0, |mask, k| mask | 1 << Self::index(*k))
    }

    fn hold<'a, G>(&'a self, mask: u64, lock: impl Fn(&'a RwLock<Data>) -> G) -> Held<G> {
        // Ascending bit order is ascending shard order.
        let guards =
            (0..SHARDS).filter(|i| mask & 1 << i != 0).map(|i| (i, lock(&self.shards[i].0))).collect();
        Held { guards }
    }
}

/// Locks held on a set of shards, released together when dropped.
pub(super) struct Held<G> {
    guards: Vec<(usize, G)>,
}

impl<G> Held<G> {
    fn position(&self, key: Key<'_>) -> usize {
        let i = Shards::index(key);
        // Only keys whose shards were locked are asked for.
        self.guards
            .binary_search_by_key(&i, |(j, _)| *j)
            .unwrap_or_else(|_| unreachable!("shard {i} not held"))
    }

    /// Every held shard, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &G> {
        self.guards.iter().map(|(_, g)| g)
    }
}

impl<G: std::ops::Deref<Target = Data>> Held<G> {
    /// The shard holding `key` (one of the keys the locks were taken for).
    pub(super) fn shard(&self, key: Key<'_>) -> &Data {
        &self.guards[self.position(key)].1
    }
}

impl<G: std::ops::DerefMut<Target = Data>> Held<G> {
    pub(super) fn shard_mut(&mut self, key: Key<'_>) -> &mut Data {
        let at = self.position(key);
        &mut self.guards[at].1
    }
}
