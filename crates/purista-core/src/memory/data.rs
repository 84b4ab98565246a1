//! One shard of the store: slots with versions and deadlines, and the rules
//! of a write.

use std::{
    collections::BTreeMap,
    hash::BuildHasher,
    time::{Duration, Instant},
};

use hashbrown::HashTable;

use crate::{
    ETag, Error, Json, PutMode, Result,
    backend::{add, counter_value},
};

/// A key with its hash, computed once per call: it picks the shard (see
/// `shards.rs`) and probes the shard's table.
#[derive(Debug, Clone, Copy)]
pub(super) struct Key<'k> {
    pub(super) name: &'k str,
    pub(super) hash: u64,
}

/// The store's one hasher: every shard's and the shard picker's.
pub(super) type Hasher = foldhash::fast::RandomState;

impl<'k> Key<'k> {
    #[inline]
    pub(super) fn new(hasher: &Hasher, name: &'k str) -> Self {
        Key { name, hash: hasher.hash_one(name) }
    }
}

#[derive(Debug)]
pub(super) struct Data {
    /// Probed with a [`Key`]'s hash. Hashes are not stored (8 bytes per
    /// bucket): growing and purging hash again with `hasher`.
    map: HashTable<Stored>,
    hasher: Hasher,
    /// Deadlines in order, for the reaper; one entry per live TTL.
    expiries: BTreeMap<(Instant, u64), Box<str>>,
    /// The next write's version; versions grow by `step`, so that shards
    /// starting at different offsets never hand out the same one.
    next: u64,
    step: u64,
}

#[derive(Debug)]
pub(super) struct Stored {
    pub(super) key: Box<str>,
    pub(super) slot: Slot,
}

#[derive(Debug)]
pub(super) struct Slot {
    pub(super) value: Json,
    pub(super) version: u64,
    pub(super) expires: Option<Instant>,
}

impl Slot {
    /// Reads the clock only for entries with a deadline: a clock read costs
    /// more than the rest of a lookup on some virtual machines.
    #[inline]
    pub(super) fn live(&self) -> bool {
        self.expires.is_none_or(|t| t > Instant::now())
    }
}

pub(super) fn etag(version: u64) -> ETag {
    ETag::new(version.to_string())
}

pub(super) fn matches(slot: Option<&Slot>, etag: &ETag) -> bool {
    slot.is_some_and(|s| s.version.to_string() == etag.as_str())
}

impl Data {
    pub(super) fn new(first: u64, step: u64, hasher: Hasher) -> Self {
        Data { map: HashTable::new(), hasher, expiries: BTreeMap::new(), next: first, step }
    }

    /// Every entry, live or not yet purged.
    pub(super) fn entries(&self) -> impl Iterator<Item = &Stored> {
        self.map.iter()
    }

    #[inline]
    fn find(&self, key: Key<'_>) -> Option<&Stored> {
        self.map.find(key.hash, |e| *e.key == *key.name)
    }

    fn find_mut(&mut self, key: Key<'_>) -> Option<&mut Stored> {
        self.map.find_mut(key.hash, |e| *e.key == *key.name)
    }

    #[inline]
    pub(super) fn live(&self, key: Key<'_>) -> Option<&Slot> {
        self.find(key).map(|e| &e.slot).filter(|s| s.live())
    }

    pub(super) fn check_put(&self, key: Key<'_>, mode: &PutMode) -> Result<()> {
        match mode {
            PutMode::Upsert => Ok(()),
            PutMode::Create if self.live(key).is_some() => Err(Error::already_exists(key.name)),
            PutMode::Create => Ok(()),
            PutMode::Update(tag) if matches(self.live(key), tag) => Ok(()),
            PutMode::Update(_) => Err(Error::etag_mismatch(key.name)),
        }
    }

    pub(super) fn check_delete(&self, key: Key<'_>, tag: Option<&ETag>) -> Result<()> {
        match tag {
            Some(tag) if !matches(self.live(key), tag) => Err(Error::etag_mismatch(key.name)),
            _ => Ok(()),
        }
    }

    /// Writes and returns the new version and the deadline set, if any.
    pub(super) fn put(&mut self, key: Key<'_>, value: Json, ttl: Option<Duration>) -> (u64, Option<Instant>) {
        let version = self.next;
        self.next += self.step;
        let expires = ttl.map(|t| Instant::now() + t);
        let slot = Slot { value, version, expires };
        // Overwrite in place: no new key allocation for a key already stored.
        let old = match self.find_mut(key) {
            Some(current) => Some(std::mem::replace(&mut current.slot, slot)),
            None => {
                let stored = Stored { key: key.name.into(), slot };
                self.map.insert_unique(key.hash, stored, |e| self.hasher.hash_one(&e.key));
                None
            }
        };
        if let Some(Slot { version: v, expires: Some(t), .. }) = old {
            self.expiries.remove(&(t, v));
        }
        if let Some(t) = expires {
            self.expiries.insert((t, version), key.name.into());
        }
        (version, expires)
    }

    pub(super) fn delete(&mut self, key: Key<'_>) -> bool {
        let Ok(found) = self.map.find_entry(key.hash, |e| *e.key == *key.name) else { return false };
        let (Stored { slot, .. }, _) = found.remove();
        if let Some(t) = slot.expires {
            self.expiries.remove(&(t, slot.version));
        }
        slot.live()
    }

    /// Adds `delta` to the counter under `key`: a missing key starts at 0
    /// with `ttl`, an existing one keeps its deadline. The sum, its version
    /// and the deadline it set, if any (a kept one is known to the reaper).
    pub(super) fn increment(
        &mut self,
        key: Key<'_>,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<(i64, u64, Option<Instant>)> {
        let found = self.map.find_mut(key.hash, |e| *e.key == *key.name);
        let Some(slot) = found.map(|e| &mut e.slot).filter(|s| s.live()) else {
            let (version, deadline) = self.put(key, Json::integer(delta), ttl);
            return Ok((delta, version, deadline));
        };
        // A live counter changes in place: one lookup, its deadline kept.
        let sum = add(key.name, counter_value(key.name, &slot.value)?, delta)?;
        let version = self.next;
        self.next += self.step;
        if let Some(t) = slot.expires
            && let Some(k) = self.expiries.remove(&(t, slot.version))
        {
            self.expiries.insert((t, version), k);
        }
        slot.value = Json::integer(sum);
        slot.version = version;
        Ok((sum, version, None))
    }

    /// Removes the entries whose deadline is past `now`; their keys, and the
    /// next deadline left.
    pub(super) fn purge(&mut self, now: Instant) -> (Vec<Box<str>>, Option<Instant>) {
        let mut gone = Vec::new();
        while let Some(entry) = self.expiries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, version), key) = entry.remove_entry();
            let hash = self.hasher.hash_one(&key);
            // Only the write that set this deadline: a later one set its own.
            if let Ok(found) = self.map.find_entry(hash, |e| *e.key == *key && e.slot.version == version) {
                found.remove();
                gone.push(key);
            }
        }
        (gone, self.expiries.first_key_value().map(|((t, _), _)| *t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_incremented_in_place_keeps_its_deadline_for_the_purge() {
        let hasher = Hasher::default();
        let mut data = Data::new(1, 1, hasher.clone());
        let c = Key::new(&hasher, "c");
        let ttl = Duration::from_secs(60);
        let (_, _, deadline) = data.increment(c, 1, Some(ttl)).unwrap();
        let deadline = deadline.expect("a new counter's deadline");
        for want in 2..=4 {
            assert_eq!(data.increment(c, 1, None).unwrap(), (want, want as u64, None));
        }
        assert_eq!(data.live(c).unwrap().expires, Some(deadline), "deadline kept");
        assert_eq!(data.expiries.len(), 1, "one deadline entry, under the latest version");
        assert!(data.purge(deadline - Duration::from_millis(1)).0.is_empty(), "not yet");
        let (gone, next) = data.purge(deadline);
        assert_eq!(gone, vec![Box::from("c")], "purged at its deadline");
        assert_eq!((next, data.entries().count()), (None, 0));
        let wrong = data.increment(c, i64::MAX, None).and_then(|_| data.increment(c, 1, None));
        assert_eq!(wrong.unwrap_err().kind(), crate::ErrorKind::InvalidValue, "overflow");
        assert_eq!(data.live(c).unwrap().value.decode::<i64>().unwrap(), i64::MAX, "nothing lost");
    }
}
