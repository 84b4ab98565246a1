//! ETags that change on every write, while the value stays a plain JSON
//! string under its plain key.
//!
//! Each key written by this crate has a companion *version key* holding a
//! 63-bit version drawn afresh for every write, written by the same command
//! or script as the value (same TTL, removed with it). The ETag is
//! `<version>-<sha1 hex of the value>`, or the bare SHA-1 while the key has
//! no version key (a value only ever written by other clients). The version
//! makes every write of this crate a new ETag, even of the same bytes (no
//! ABA); the hash makes a write by another client, which leaves the version
//! key alone, a new ETag whenever it changes the bytes.
//!
//! The version key is `__purista_etag__:{<tag>}<key>`: `<tag>` is the
//! shortest alphanumeric string that Redis Cluster hashes to the key's slot,
//! so the two always share a slot (multi-key scripts and `MSET` stay legal),
//! whatever braces the key holds. Keys starting with
//! [`VERSION_PREFIX`] are reserved.

use std::{
    hash::{BuildHasher, RandomState},
    sync::{
        LazyLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use fred::util::redis_keyslot;
use purista_core::{ETag, Error, ErrorKind, Result};

use crate::scripts::etag_of;

/// What every version key starts with; user keys may not.
pub(crate) const VERSION_PREFIX: &str = "__purista_etag__:";

/// Redis Cluster's slot count.
const SLOTS: usize = 16384;

/// For each slot, the shortest string over [`ALPHABET`] (then the first in
/// alphabet order) that hashes to it. Part of the stored format: changing
/// it orphans every version key.
static TAGS: LazyLock<Vec<String>> = LazyLock::new(slot_tags);

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn slot_tags() -> Vec<String> {
    let mut tags = vec![String::new(); SLOTS];
    let mut missing = SLOTS;
    // 62 + 62^2 + 62^3 candidates cover every slot (tested).
    for len in 1..=3u32 {
        for n in 0..ALPHABET.len().pow(len) {
            let mut rest = n;
            let candidate: String = (0..len)
                .map(|_| {
                    let c = ALPHABET[rest % ALPHABET.len()];
                    rest /= ALPHABET.len();
                    char::from(c)
                })
                .collect();
            let tag = &mut tags[usize::from(redis_keyslot(candidate.as_bytes()))];
            if tag.is_empty() {
                *tag = candidate;
                missing -= 1;
                if missing == 0 {
                    return tags;
                }
            }
        }
    }
    tags
}

/// Whether `key` is a version key (never listed, never watched).
pub(crate) fn is_version_key(key: &str) -> bool {
    key.starts_with(VERSION_PREFIX)
}

/// The version key of `key`; `InvalidKey` for a key in the reserved range.
pub(crate) fn version_key(key: &str) -> Result<String> {
    if is_version_key(key) {
        let msg =
            format!("keys starting with {VERSION_PREFIX:?} are reserved for the ETag versions of this store");
        return Err(Error::new(ErrorKind::InvalidKey, msg).with_key(key));
    }
    let tag = &TAGS[usize::from(redis_keyslot(key.as_bytes()))];
    let mut out = String::with_capacity(VERSION_PREFIX.len() + tag.len() + 2 + key.len());
    out.push_str(VERSION_PREFIX);
    out.push('{');
    out.push_str(tag);
    out.push('}');
    out.push_str(key);
    Ok(out)
}

/// A version for the next write: distinct for every call in this process
/// (a bijection of a counter), and random across processes (seeded by the
/// OS), 63 bits so that Redis stores it as an integer.
pub(crate) fn next_version() -> i64 {
    const MASK: u64 = u64::MAX >> 1;
    static SEED: LazyLock<u64> = LazyLock::new(|| RandomState::new().hash_one(std::process::id()));
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Relaxed);
    // splitmix64's steps taken mod 2^63: each is invertible, so distinct
    // counters give distinct versions.
    let mut x = SEED.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) & MASK;
    x = ((x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9)) & MASK;
    x = ((x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB)) & MASK;
    x ^= x >> 31;
    i64::try_from(x).unwrap_or(i64::MAX)
}

/// The ETag of `bytes` written with `version` (none: never written by this
/// crate), as the scripts compare it.
pub(crate) fn etag(version: Option<&str>, bytes: &[u8]) -> ETag {
    let hash = etag_of(bytes);
    match version {
        Some(v) => ETag::new(format!("{v}-{hash}")),
        None => hash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_has_a_tag_of_at_most_three_characters() {
        assert!(TAGS.iter().all(|t| (1..=3).contains(&t.len())));
        for (slot, tag) in TAGS.iter().enumerate() {
            assert_eq!(usize::from(redis_keyslot(tag.as_bytes())), slot, "{tag}");
        }
    }

    #[test]
    fn version_keys_share_the_slot_of_their_key() {
        for key in ["session:abc", "{order:7}:items", "a}b", "x{}y", "{", "}", "a{b", "{}{x}", "ключ", "k"]
        {
            let v = version_key(key).unwrap();
            assert_eq!(redis_keyslot(v.as_bytes()), redis_keyslot(key.as_bytes()), "{key} -> {v}");
            assert!(v.ends_with(key) && is_version_key(&v));
        }
        // The stored format: fixed for good.
        assert_eq!(version_key("session:abc").unwrap(), "__purista_etag__:{TZ}session:abc");
        assert_eq!(version_key("{order:7}:items").unwrap(), "__purista_etag__:{Je0}{order:7}:items");
        let err = version_key("__purista_etag__:{x}k").unwrap_err();
        assert_eq!((err.kind(), err.key()), (ErrorKind::InvalidKey, Some("__purista_etag__:{x}k")));
    }

    #[test]
    fn versions_do_not_repeat() {
        let seen: std::collections::HashSet<i64> = (0..100_000).map(|_| next_version()).collect();
        assert_eq!(seen.len(), 100_000);
        assert!(seen.iter().all(|v| *v >= 0));
    }

    #[test]
    fn etag_format() {
        assert_eq!(etag(None, b"abc").as_str(), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(etag(Some("42"), b"abc").as_str(), "42-a9993e364706816aba3e25717850c26c9cd0d89d");
    }
}
