//! The server-side scripts behind conditional writes, conditional removes,
//! reads with metadata and transactions.
//!
//! An ETag is the SHA-1 (lower-case hex) of the stored bytes: `redis.sha1hex`
//! in Lua, [`etag_of`] in Rust. The stored format stays a plain JSON string.

use std::sync::LazyLock;

use purista_core::ETag;

/// A Lua script and its SHA-1, for `EVALSHA` with an `EVAL` fallback.
#[derive(Debug)]
pub(crate) struct Script {
    pub(crate) src: &'static str,
    pub(crate) sha: String,
}

impl Script {
    fn new(src: &'static str) -> Self {
        Script { src, sha: sha1_smol::Sha1::from(src).digest().to_string() }
    }
}

/// The ETag of a stored value: the lowercase hex SHA-1 of its bytes, as the
/// scripts' `redis.sha1hex` computes it. Hex by hand: `Digest`'s `Display`
/// costs as much as the hash itself.
pub(crate) fn etag_of(bytes: &[u8]) -> ETag {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = sha1_smol::Sha1::from(bytes).digest().bytes();
    let mut hex = String::with_capacity(40);
    for b in digest {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    ETag::new(hex)
}

/// The channel every write and remove of this crate publishes on, right
/// before making the change (only while some connection holds a pattern
/// subscription): `__purista@<db>__:<key>`, message `s<value>` or `d`.
/// Watchers get each change with its value, in order, on one channel, even
/// when the key is gone by the time they could read it; keyspace
/// notifications cover other writers and expiry.
pub(crate) const VALUE_CHANNEL: &str = "__purista@";

/// `KEYS[1]`; `ARGV`: mode (`P` upsert, `C` create, `U` update-if-ETag),
/// expected ETag or "", TTL in ms or "", value, db index.
/// Returns 1 when written, 0 when the condition failed.
pub(crate) static WRITE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"local k = KEYS[1]
local mode = ARGV[1]
if mode == 'C' then
  if redis.call('EXISTS', k) == 1 then return 0 end
elseif mode == 'U' then
  local cur = redis.call('GET', k)
  if not cur or redis.sha1hex(cur) ~= ARGV[2] then return 0 end
end
if redis.call('PUBSUB', 'NUMPAT') > 0 then
  redis.call('PUBLISH', '__purista@' .. ARGV[5] .. '__:' .. k, 's' .. ARGV[4])
end
if ARGV[3] == '' then
  redis.call('SET', k, ARGV[4])
else
  redis.call('SET', k, ARGV[4], 'PX', ARGV[3])
end
return 1"#,
    )
});

/// `KEYS[1]`; `ARGV`: expected ETag or "", db index. Returns 1 when removed
/// (or absent without an ETag), 0 on mismatch.
pub(crate) static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"local k = KEYS[1]
if ARGV[1] ~= '' then
  local cur = redis.call('GET', k)
  if not cur or redis.sha1hex(cur) ~= ARGV[1] then return 0 end
elseif redis.call('EXISTS', k) == 0 then
  return 1
end
if redis.call('PUBSUB', 'NUMPAT') > 0 then
  redis.call('PUBLISH', '__purista@' .. ARGV[2] .. '__:' .. k, 'd')
end
redis.call('DEL', k)
return 1"#,
    )
});

/// `KEYS[1]`. Returns nil, or `{value, pttl}` read atomically.
pub(crate) static READ_ENTRY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"local v = redis.call('GET', KEYS[1])
if not v then return false end
return {v, redis.call('PTTL', KEYS[1])}"#,
    )
});

/// One key per step in `KEYS` (keys may repeat); `ARGV[1]` the db index,
/// then four `ARGV` per step: kind
/// (`P` upsert, `C` create, `U` update-if-ETag, `D` remove, `E`
/// remove-if-ETag), ETag or "", TTL in ms or "", value or "".
///
/// Every condition is checked against the state the earlier steps leave
/// behind before anything is written: all or nothing. Returns 0 when applied,
/// or `{step, reason}` (1-based) for the first failed condition.
pub(crate) static TRANSACTION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"local state = {}
for i = 1, #KEYS do
  local k = KEYS[i]
  local b = (i - 1) * 4 + 1
  local kind = ARGV[b + 1]
  local cur = state[k]
  if cur == nil then
    local v = redis.call('GET', k)
    if v then cur = redis.sha1hex(v) else cur = false end
  end
  if kind == 'C' and cur then return {i, 'key already exists'} end
  if (kind == 'U' or kind == 'E') and cur ~= ARGV[b + 2] then return {i, 'etag does not match'} end
  if kind == 'D' or kind == 'E' then
    state[k] = false
  else
    state[k] = redis.sha1hex(ARGV[b + 4])
  end
end
local publish = redis.call('PUBSUB', 'NUMPAT') > 0
for i = 1, #KEYS do
  local k = KEYS[i]
  local b = (i - 1) * 4 + 1
  local kind = ARGV[b + 1]
  if kind == 'D' or kind == 'E' then
    if redis.call('EXISTS', k) == 1 then
      if publish then redis.call('PUBLISH', '__purista@' .. ARGV[1] .. '__:' .. k, 'd') end
      redis.call('DEL', k)
    end
  else
    if publish then redis.call('PUBLISH', '__purista@' .. ARGV[1] .. '__:' .. k, 's' .. ARGV[b + 4]) end
    if ARGV[b + 3] == '' then
      redis.call('SET', k, ARGV[b + 4])
    else
      redis.call('SET', k, ARGV[b + 4], 'PX', ARGV[b + 3])
    end
  end
end
return 0"#,
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_is_sha1_hex_of_the_stored_bytes() {
        // sha1("abc"), as `redis.sha1hex('abc')` answers.
        assert_eq!(etag_of(b"abc").as_str(), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_ne!(WRITE.sha, DELETE.sha);
        assert_eq!(TRANSACTION.sha.len(), 40);
    }
}
