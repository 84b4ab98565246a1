//! Key rules, checked in one place before any backend sees a key.

use crate::{Error, ErrorKind, Result};

/// The longest key accepted, in bytes of UTF-8 (the store's own key prefix
/// and any service namespace come on top).
pub const MAX_KEY_BYTES: usize = 1024;

/// Checks a key: any non-empty UTF-8 string of at most [`MAX_KEY_BYTES`].
/// Backends map valid keys onto what they can store.
#[inline]
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES { invalid_key(key) } else { Ok(()) }
}

#[cold]
fn invalid_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::new(ErrorKind::InvalidKey, "key is empty"));
    }
    // Name the length, not the (possibly huge) key.
    let msg = format!("key is {} bytes long, the limit is {MAX_KEY_BYTES}", key.len());
    Err(Error::new(ErrorKind::InvalidKey, msg))
}

/// Puts `prefix` before `key` (no allocation-free path: backends need owned keys).
pub(crate) fn join(prefix: &str, key: &str) -> String {
    let mut full = String::with_capacity(prefix.len() + key.len());
    full.push_str(prefix);
    full.push_str(key);
    full
}

/// Removes `prefix` from a key a backend handed back.
pub(crate) fn strip(prefix: &str, mut key: String) -> String {
    if !prefix.is_empty() && key.starts_with(prefix) {
        key.drain(..prefix.len());
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(validate_key("").unwrap_err().kind(), ErrorKind::InvalidKey);
        assert!(validate_key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        let long = validate_key(&"k".repeat(MAX_KEY_BYTES + 1)).unwrap_err();
        assert_eq!(long.kind(), ErrorKind::InvalidKey);
        // 1024 bytes counted as UTF-8, not chars: 342 three-byte chars = 1026 bytes.
        assert!(validate_key(&"€".repeat(342)).is_err());
        for ok in ["session:abc", "a b", "ключ", "..", "a||b", "*", ">"] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn join_and_strip() {
        assert_eq!(join("svc:", "k"), "svc:k");
        assert_eq!(strip("svc:", "svc:k".into()), "k");
        assert_eq!(strip("", "k".into()), "k");
    }
}
