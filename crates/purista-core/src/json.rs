//! JSON documents as bytes: serialised once on the way in, parsed once on the
//! way out, never routed through an intermediate tree.

use std::fmt;

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use crate::{Error, ErrorKind, Result};

/// A JSON document, held as its UTF-8 text.
///
/// Cloning is cheap (reference counted) and safe: the bytes are immutable, so
/// a value read from a store never aliases what the store holds.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Json(Bytes);

impl Json {
    /// Serialises `value` (the typed write path: no validation needed).
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Json> {
        serde_json::to_vec(value).map(|v| Json(v.into())).map_err(|e| {
            Error::new(ErrorKind::InvalidValue, "value cannot be serialised as JSON").with_source(e)
        })
    }

    /// A JSON integer (a counter's value), formatted without serde.
    pub fn integer(n: i64) -> Json {
        Json(Bytes::copy_from_slice(itoa::Buffer::new().format(n).as_bytes()))
    }

    /// Checks that `bytes` hold exactly one JSON document.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Result<Json> {
        let bytes = bytes.into();
        // IgnoredAny walks the syntax without allocating a tree.
        serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).map_err(|e| {
            Error::new(ErrorKind::InvalidValue, "value is not a JSON document").with_source(e)
        })?;
        Ok(Json(bytes))
    }

    /// Wraps bytes a backend returned, without checking them: [`decode`]
    /// reports bytes that are not JSON (another client may have written them).
    ///
    /// [`decode`]: Json::decode
    pub fn from_stored(bytes: impl Into<Bytes>) -> Json {
        Json(bytes.into())
    }

    /// Parses the document into `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.0).map_err(|e| {
            let what = std::any::type_name::<T>();
            Error::new(ErrorKind::InvalidValue, format!("stored value does not decode as {what}"))
                .with_source(e)
        })
    }

    /// The JSON text as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The JSON text, if it is UTF-8 (always, unless a foreign writer stored
    /// something else).
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl From<&serde_json::Value> for Json {
    fn from(value: &serde_json::Value) -> Json {
        // A Value always serialises (its map keys are strings).
        Json(serde_json::to_vec(value).unwrap_or_default().into())
    }
}

impl From<serde_json::Value> for Json {
    fn from(value: serde_json::Value) -> Json {
        Json::from(&value)
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Json({})", String::from_utf8_lossy(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rejects_non_json_and_trailing_garbage() {
        for bad in [&b""[..], b"{", b"nope", b"1 2", b"{\"a\":1}x"] {
            let err = Json::from_bytes(bad.to_vec()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidValue, "{bad:?}");
        }
        assert!(Json::from_bytes(&b" null "[..]).is_ok());
    }

    #[test]
    fn unserialisable_values_are_errors() {
        let bad: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        assert_eq!(Json::encode(&bad).unwrap_err().kind(), ErrorKind::InvalidValue);
    }

    #[test]
    fn decode_mismatch_is_an_error_not_a_panic() {
        let stored = Json::from(json!({"count": "ten"}));
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Counter {
            count: u64,
        }
        let err = stored.decode::<Counter>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
        assert!(Json::from_stored(&b"\xff\xfe"[..]).decode::<String>().is_err());
    }
}
