//! The reversible mapping between store keys and NATS KV keys.
//!
//! NATS KV keys must match `[-/_=.a-zA-Z0-9]+` and must not start or end with
//! `.`; a `.` separates subject tokens, so an empty token (`a..b`) is not a
//! usable subject either. Store keys are any non-empty UTF-8 string, so they
//! are mapped, quoted-printable style, with `=` as the escape character:
//!
//! - `A-Z a-z 0-9 - / _` are kept as they are;
//! - `.` is kept, except where it would start the key, follow another kept
//!   `.`, or end the key: there it becomes `=2E`;
//! - every other byte of the key's UTF-8 (`=` itself, `:`, spaces, `*`, `>`,
//!   non-ASCII ...) becomes `=` and two upper-case hex digits.
//!
//! | store key       | NATS key              |
//! |-----------------|-----------------------|
//! | `user.42`       | `user.42`             |
//! | `session:abc`   | `session=3Aabc`       |
//! | `a b`           | `a=20b`               |
//! | `ключ`          | `=D0=BA=D0=BB=D1=8E=D1=87` |
//! | `..`            | `=2E=2E`              |
//! | `a.`            | `a=2E`                |
//! | `*` / `>`       | `=2A` / `=3E`         |
//! | `x=1`           | `x=3D1`               |
//!
//! Keys NATS already accepts and that hold no `=` are stored unchanged, so a
//! PURISTA TypeScript service on the same bucket sees the same keys.
//!
//! Every choice but the trailing `.` depends only on what comes before, so
//! the mapping preserves prefixes: for any prefix `p` of a key `k`,
//! [`encode_prefix`]`(p)` is a prefix of [`encode`]`(k)`. `encode_prefix(p)`
//! is `encode(p)` except that a kept trailing `.` is not written (it is still
//! open whether the key ends there). [`decode`] inverts [`encode`] and refuses
//! NATS keys `encode` never produces.

use std::fmt::Write as _;

use purista_core::{Error, ErrorKind, Result};

/// The longest mapped key sent: leaves room for `$JS.API.DIRECT.GET.KV_<bucket>.$KV.<bucket>.`,
/// a reply inbox and lengths in a 4 KiB protocol line. A contract key of
/// 1024 bytes maps to at most 3072, plus the mapped key prefix.
pub const MAX_NATS_KEY_BYTES: usize = 3584;
const ESCAPE: u8 = b'=';

fn kept(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_')
}

/// Writes `key` escaped, leaving a final kept `.` out; returns whether it did.
fn encode_into(key: &str, out: &mut String) -> bool {
    out.reserve(key.len());
    let mut last_dot = false;
    for &b in key.as_bytes() {
        if b == b'.' && !out.is_empty() && !last_dot {
            out.push('.');
            last_dot = true;
            continue;
        }
        last_dot = false;
        if kept(b) {
            out.push(b as char);
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "={b:02X}");
        }
    }
    if last_dot {
        out.pop();
    }
    last_dot
}

/// The NATS key a store key is kept under.
pub fn encode(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    if encode_into(key, &mut out) {
        out.push_str("=2E");
    }
    out
}

/// What every NATS key of a store key starting with `prefix` starts with.
pub fn encode_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    encode_into(prefix, &mut out);
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The store key behind a NATS key, or `None` for a key [`encode`] never
/// produces (written by another client).
pub fn decode(nats_key: &str) -> Option<String> {
    let bytes = nats_key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == ESCAPE {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    let key = String::from_utf8(out).ok()?;
    // Canonical form only: one store key, one NATS key.
    (!key.is_empty() && encode(&key) == nats_key).then_some(key)
}

/// Whether NATS takes `key` as a KV key (async-nats's own rule, plus no empty token).
pub fn is_valid_nats_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('.')
        && !key.ends_with('.')
        && !key.contains("..")
        && key.bytes().all(|b| kept(b) || b == b'.' || b == ESCAPE)
}

/// The subject filter a watch or listing by `encoded_prefix` subscribes to,
/// below `$KV.<bucket>.`: whole tokens only; the rest is filtered locally.
pub fn filter_tokens(encoded_prefix: &str) -> String {
    match encoded_prefix.rfind('.') {
        Some(dot) => format!("{}.>", &encoded_prefix[..dot]),
        None => ">".to_owned(),
    }
}

/// The mapped key, if it fits in a NATS protocol line: a longer subject would
/// make the server close the connection (`max_control_line`, 4 KiB by
/// default), so it is refused before anything is sent.
pub(crate) fn nats_key(key: &str) -> Result<String> {
    let encoded = encode(key);
    if encoded.len() > MAX_NATS_KEY_BYTES {
        let msg = format!(
            "key is {} bytes once mapped for NATS, at most {MAX_NATS_KEY_BYTES} fit in a subject",
            encoded.len()
        );
        return Err(Error::new(ErrorKind::InvalidKey, msg).with_key(key));
    }
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples() {
        let cases = [
            ("user.42", "user.42"),
            ("session:abc", "session=3Aabc"),
            ("a b", "a=20b"),
            ("ключ", "=D0=BA=D0=BB=D1=8E=D1=87"),
            ("..", "=2E=2E"),
            ("...", "=2E.=2E"),
            ("a.", "a=2E"),
            ("a..b", "a.=2Eb"),
            (".a", "=2Ea"),
            ("*", "=2A"),
            (">", "=3E"),
            ("x=1", "x=3D1"),
            ("a/b-c_d", "a/b-c_d"),
        ];
        for (key, nats) in cases {
            assert_eq!(encode(key), nats, "{key}");
            assert_eq!(decode(nats).as_deref(), Some(key), "{nats}");
            assert!(is_valid_nats_key(nats), "{nats}");
        }
    }

    #[test]
    fn foreign_keys_do_not_decode() {
        for foreign in ["x=1", "a=2", "=41", "=e2", "=FF", "a=2E.b=2E"] {
            assert_eq!(decode(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn prefixes_and_filters() {
        assert_eq!(encode_prefix("a."), "a");
        assert_eq!(encode_prefix("session:"), "session=3A");
        assert_eq!(filter_tokens("a"), ">");
        assert_eq!(filter_tokens("user.4"), "user.>");
        assert_eq!(filter_tokens("x.y.z"), "x.y.>");
    }
}
