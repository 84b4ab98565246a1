//! The server-side scripts behind conditional writes, conditional removes,
//! reads with metadata and transactions.
//!
//! Every script that writes or removes a key does the same to its version
//! key (`KEYS` come in pairs: key, version key; see [`crate::etag`]). An
//! ETag is `<version>-<sha1 hex>` (the bare SHA-1 while there is no version
//! key); the scripts compare it with `redis.sha1hex` of the stored bytes.
//!
//! While a Cluster slot migrates, its source runs a script only when it
//! holds every key the script names, and refuses any command of the script
//! on a key it no longer holds. So no script touches a key after removing
//! it: a refusal half-way would keep the script's earlier writes.

use std::sync::LazyLock;

use fred::{
    clients::Client,
    interfaces::LuaInterface,
    types::{Key, Value},
};
use purista_core::{ETag, Result};

use crate::{RedisStateStore, error, replicas};

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

/// Runs a script by SHA, loading it with `EVAL` when the server lacks it.
pub(crate) async fn run(
    store: &RedisStateStore,
    script: &Script,
    keys: Vec<Key>,
    args: Vec<Value>,
) -> Result<Value> {
    run_on(store, store.pool().next(), script, keys, args).await
}

/// Runs a writing script; when it wrote (`wrote`) and the store waits for
/// replicas, `WAIT`s on the same connection.
pub(crate) async fn run_write(
    store: &RedisStateStore,
    script: &Script,
    keys: Vec<Key>,
    args: Vec<Value>,
    wrote: fn(&Value) -> bool,
) -> Result<Value> {
    let client = store.pool().next();
    let reply = run_on(store, client, script, keys, args).await?;
    if wrote(&reply) {
        replicas::after_write(store, client).await?;
    }
    Ok(reply)
}

async fn run_on(
    store: &RedisStateStore,
    client: &Client,
    script: &Script,
    keys: Vec<Key>,
    args: Vec<Value>,
) -> Result<Value> {
    let evalsha = || client.evalsha::<Value, _, _, _>(script.sha.as_str(), keys.clone(), args.clone());
    match store.resend(evalsha).await {
        Err(e) if error::is_noscript(&e) => {
            let eval = || client.eval::<Value, _, _, _>(script.src, keys.clone(), args.clone());
            store.resend(eval).await.map_err(|e| store.err(e, "EVAL"))
        }
        other => other.map_err(|e| store.err(e, "EVALSHA")),
    }
}

/// The lowercase hex SHA-1 of a value's bytes, as the scripts'
/// `redis.sha1hex` computes it: an ETag's hash part. Hex by hand: `Digest`'s
/// `Display` costs as much as the hash itself.
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

/// `matches(k, v, etag)`: whether key `k` (version key `v`) is present with
/// ETag `etag`. The version part is compared first, so a stale ETag is
/// mostly refused without hashing the value.
macro_rules! lua_matches {
    () => {
        r#"local function matches(k, v, want)
  local cur = redis.call('GET', k)
  if not cur then return false end
  local ver = redis.call('GET', v)
  if ver then
    local head = ver .. '-'
    if string.sub(want, 1, #head) ~= head then return false end
    want = string.sub(want, #head + 1)
  end
  return redis.sha1hex(cur) == want
end
"#
    };
}

/// `KEYS`: key, version key; `ARGV`: mode (`P` upsert, `C` create, `U`
/// update-if-ETag), expected ETag or "", TTL in ms or "", value, db index,
/// version. Returns 1 when written, 0 when the condition failed.
pub(crate) static WRITE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_matches!(),
        r#"local k, v = KEYS[1], KEYS[2]
local mode = ARGV[1]
if mode == 'C' then
  if redis.call('EXISTS', k) == 1 then return 0 end
elseif mode == 'U' then
  if not matches(k, v, ARGV[2]) then return 0 end
end
if redis.call('PUBSUB', 'NUMPAT') > 0 then
  redis.call('PUBLISH', '__purista@' .. ARGV[5] .. '__:' .. k, 's' .. ARGV[4])
end
if ARGV[3] == '' then
  redis.call('SET', k, ARGV[4])
  redis.call('SET', v, ARGV[6])
else
  redis.call('SET', k, ARGV[4], 'PX', ARGV[3])
  redis.call('SET', v, ARGV[6], 'PX', ARGV[3])
end
return 1"#
    ))
});

/// `KEYS`: key, version key; `ARGV`: expected ETag or "", db index. Returns
/// 1 when removed (or absent without an ETag), 0 on mismatch. A version key
/// left behind by another client's `DEL` goes too.
pub(crate) static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_matches!(),
        r#"local k, v = KEYS[1], KEYS[2]
if ARGV[1] ~= '' then
  if not matches(k, v, ARGV[1]) then return 0 end
elseif redis.call('EXISTS', k) == 0 then
  redis.call('DEL', v)
  return 1
end
if redis.call('PUBSUB', 'NUMPAT') > 0 then
  redis.call('PUBLISH', '__purista@' .. ARGV[2] .. '__:' .. k, 'd')
end
redis.call('DEL', k, v)
return 1"#
    ))
});

/// `KEYS`: key, version key. Returns nil, or `{value, pttl, version or
/// nil}` read atomically.
pub(crate) static READ_ENTRY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"local value = redis.call('GET', KEYS[1])
if not value then return false end
return {value, redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[2])}"#,
    )
});

/// `KEYS`: key and version key per step (keys may repeat); `ARGV[1]` the
/// db index, `ARGV[2]` the version every write gets, then five `ARGV` per
/// step: the condition the server judges (`-` none, `C` create, `U`
/// update-if-ETag, `E` remove-if-ETag), ETag or "", the write (`P` a value,
/// `D` a remove, `-` none), TTL in ms or "", value or "". Later steps'
/// conditions and which writes to leave out are decided by the caller (see
/// [`crate::transaction`]).
///
/// Every condition is checked, and every key read, before anything is
/// written: all or nothing, as long as no write touches a key an earlier
/// write removed (see the module doc). Returns 0 when applied, or `{step,
/// condition}` (step 1-based) for the first failed condition.
pub(crate) static TRANSACTION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_matches!(),
        r#"local n = #KEYS / 2
for i = 1, n do
  local k, v, b = KEYS[2 * i - 1], KEYS[2 * i], 2 + (i - 1) * 5
  local cond = ARGV[b + 1]
  if cond == 'C' then
    if redis.call('EXISTS', k) == 1 then return {i, cond} end
  elseif cond == 'U' or cond == 'E' then
    if not matches(k, v, ARGV[b + 2]) then return {i, cond} end
  end
end
local publish = redis.call('PUBSUB', 'NUMPAT') > 0
for i = 1, n do
  local k, v, b = KEYS[2 * i - 1], KEYS[2 * i], 2 + (i - 1) * 5
  local write = ARGV[b + 3]
  if write == 'D' then
    if publish and redis.call('EXISTS', k) == 1 then
      redis.call('PUBLISH', '__purista@' .. ARGV[1] .. '__:' .. k, 'd')
    end
    redis.call('DEL', k, v)
  elseif write == 'P' then
    if publish then redis.call('PUBLISH', '__purista@' .. ARGV[1] .. '__:' .. k, 's' .. ARGV[b + 5]) end
    if ARGV[b + 4] == '' then
      redis.call('SET', k, ARGV[b + 5])
      redis.call('SET', v, ARGV[2])
    else
      redis.call('SET', k, ARGV[b + 5], 'PX', ARGV[b + 4])
      redis.call('SET', v, ARGV[2], 'PX', ARGV[b + 4])
    end
  end
end
return 0"#
    ))
});

/// `KEYS`: key, version key; `ARGV`: delta, TTL in ms or "" (for a new
/// counter), version. `INCRBY` on the plain JSON number, then the version
/// (with the key's expiry). Returns `{1, sum}`, or `{0, stored value}` when
/// the value is no integer or the sum overflows (nothing written).
/// `INCRBY` itself is the check: it takes exactly the canonical integers
/// JSON writes (no sign `+`, leading zero, fraction or exponent) within
/// `i64`, so the value is read only when it refuses.
/// Lua numbers are doubles: a sum from ±2^53 on comes back as `GET`'s text.
/// Watchers see it through the `incrby` notification, as another client's.
pub(crate) static INCREMENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"local k, v = KEYS[1], KEYS[2]
local new = ARGV[2] ~= '' and redis.call('EXISTS', k) == 0
local ok, sum = pcall(redis.call, 'INCRBY', k, ARGV[1])
if not ok then return {0, redis.call('GET', k)} end
if new then redis.call('PEXPIRE', k, ARGV[2]) end
local ttl = redis.call('PTTL', k)
if ttl > 0 then
  redis.call('SET', v, ARGV[3], 'PX', ttl)
else
  redis.call('SET', v, ARGV[3])
end
if sum >= 9007199254740992 or sum <= -9007199254740992 then sum = redis.call('GET', k) end
return {1, sum}"#,
    )
});

/// The guard opening a step of the holder `KEYS[1]` with token `ARGV[1]`:
/// returns 0 when that token no longer holds it, `{2, value}` when the
/// value there is not a holder's (`{"token": n, "holder": …}`).
macro_rules! lua_held_by_token {
    () => {
        r#"local function refusal(cur)
  if not cur then return 0 end
  local ok, h = pcall(cjson.decode, cur)
  if not (ok and type(h) == 'table' and type(h.token) == 'number') then return {2, cur} end
  if h.token ~= tonumber(ARGV[1]) then return 0 end
  return nil
end
local refused = refusal(redis.call('GET', KEYS[1]))
if refused then return refused end
"#
    };
}

/// A lease grant (see `purista_core::lease`). `KEYS`: fence, its version
/// key, holder, its version key; `ARGV`: TTL in ms, holder name as a JSON
/// string, db index, fence version, holder version. Returns `{1, token}`
/// (a string) when granted, `{0, pttl}` when held, `{2, fence}` when the
/// fence is no integer below 10^15 (Lua counts in doubles; nothing written).
pub(crate) static LEASE_GRANT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"local f, fv, h, hv = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('EXISTS', h) == 1 then return {0, redis.call('PTTL', h)} end
local cur = redis.call('GET', f)
if cur and (not string.match(cur, '^[0-9]+$') or #cur > 15) then return {2, cur} end
local t = string.format('%d', tonumber(cur or '0') + 1)
local value = '{"token":' .. t .. ',"holder":' .. ARGV[2] .. '}'
if redis.call('PUBSUB', 'NUMPAT') > 0 then
  redis.call('PUBLISH', '__purista@' .. ARGV[3] .. '__:' .. f, 's' .. t)
  redis.call('PUBLISH', '__purista@' .. ARGV[3] .. '__:' .. h, 's' .. value)
end
redis.call('SET', f, t)
redis.call('SET', fv, ARGV[4])
redis.call('SET', h, value, 'PX', ARGV[1])
redis.call('SET', hv, ARGV[5], 'PX', ARGV[1])
return {1, t}"#,
    )
});

/// A lease renewal. `KEYS`: holder, its version key; `ARGV`: token, TTL in
/// ms. Returns 1 when renewed, 0 when the token no longer holds it, `{2,
/// value}` when the holder value is not a holder's.
pub(crate) static LEASE_RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_held_by_token!(),
        r#"redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1"#
    ))
});

/// A lease release. `KEYS`: holder, its version key; `ARGV`: token, db
/// index. Returns 1 when removed, 0 when the token no longer holds it,
/// `{2, value}` when the holder value is not a holder's.
pub(crate) static LEASE_RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_held_by_token!(),
        r#"if redis.call('PUBSUB', 'NUMPAT') > 0 then
  redis.call('PUBLISH', '__purista@' .. ARGV[2] .. '__:' .. KEYS[1], 'd')
end
redis.call('DEL', KEYS[1], KEYS[2])
return 1"#
    ))
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha1_hex_of_the_stored_bytes() {
        // sha1("abc"), as `redis.sha1hex('abc')` answers.
        assert_eq!(etag_of(b"abc").as_str(), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_ne!(WRITE.sha, DELETE.sha);
        assert_eq!(TRANSACTION.sha.len(), 40);
    }
}
