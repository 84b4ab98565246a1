//! PURISTA state store on Redis, built on [`fred`] (re-exported): standalone,
//! TLS (`rediss://`, with the `tls-rustls` or `tls-native` feature), Sentinel
//! and Cluster, with every capability of the `purista_core` contract.
//!
//! ```no_run
//! use purista_core::{PutOptions, StateStore, StateStoreExt};
//! use purista_redis_state_store::RedisStateStore;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> purista_core::Result<()> {
//! // Connects once, up front: a wrong address fails here, not on first use.
//! let store = RedisStateStore::connect("redis://127.0.0.1:6379").await?;
//! store.set("session:abc", &serde_json::json!({"user": 7})).await?;
//! // `redis-cli GET session:abc` shows {"user":7}.
//! let entry = store.get_entry("session:abc").await?.expect("just written");
//! // Compare-and-swap on the ETag; a concurrent writer makes this a Conflict.
//! let json = purista_core::Json::encode(&serde_json::json!({"user": 8}))?;
//! store.put("session:abc", json, PutOptions::update(entry.etag)).await?;
//! store.destroy().await?;
//! # Ok(()) }
//! ```
//!
//! # Storage format
//!
//! Each value is the plain JSON text, as a Redis string under the key (after
//! the configured [`key_prefix`](purista_core::StoreConfig::key_prefix)). A
//! PURISTA TypeScript service sharing the Redis (with no key prefix) reads
//! and writes the same keys. Beside each key this crate writes, it keeps a
//! small *version key* (below) for its ETags.
//!
//! # ETags
//!
//! Every write by this store gives the key a new ETag, even when it writes
//! the same bytes again (no ABA): with the value, the same command or script
//! writes a fresh 63-bit version to the key's version key
//! `__purista_etag__:{<tag>}<key>` (`<tag>` makes it share the key's Cluster
//! hash slot; it has the key's TTL and is removed with it). The ETag is
//! `<version>-<sha1 hex of the value>`: a plain `SET` by another client (a
//! PURISTA TypeScript service) leaves the version alone but changes the hash,
//! so it changes the ETag too, unless it writes the very same bytes. A value
//! only ever written by other clients has no version key; its ETag is the
//! bare SHA-1, and a compare-and-swap with it works the same way. Keys
//! starting with `__purista_etag__:` are refused (`InvalidKey`); version keys
//! are never listed nor watched. Versions come from a per-process counter
//! through a bijective mix seeded at random: they never repeat within a
//! process, and two processes draw the same one with probability 2^-63.
//!
//! # Operations
//!
//! - `get_state` of N names is one `MGET` (in Cluster mode one `MGET` per hash
//!   slot, sent concurrently).
//! - TTLs have millisecond granularity (`SET ... PX`); a write without TTL
//!   removes an earlier one; `get_entry` reads the expiry back with `PTTL`.
//! - Writes and removes are small Lua scripts (`EVALSHA`, falling back to
//!   `EVAL`), atomic on the server: create-only, update-if-ETag and
//!   remove-if-ETag check their condition and write in one step; `get_entry`
//!   reads value and `PTTL` together; a transaction checks every condition
//!   (against the state the earlier steps leave) before it writes anything.
//!   In Cluster mode all keys of one transaction must share a hash slot (use
//!   a `{hash tag}`); a transaction that does not fails with
//!   `InvalidArgument` naming the rule, before anything is sent.
//! - `list_keys` is `SCAN MATCH` with the glob characters of the prefix
//!   escaped (on every primary in Cluster mode); expired keys are not listed.
//! - `watch` uses keyspace notifications. If the server has them off, the
//!   store switches on the flags it needs (`CONFIG SET notify-keyspace-events`,
//!   adding `K`, `g`, `$`, `x`, `e` to what is set); where `CONFIG` is refused
//!   the error (`Unsupported`) says how to enable them. Writes and removes of
//!   this crate also publish the change on `__purista@<db>__:<key>` right
//!   before making it (only while some connection holds a pattern
//!   subscription, i.e. while anyone watches), so watchers get each change
//!   with its value, in order, even when the key is gone again by the time
//!   they could read it. While nobody watches, an upsert without TTL is one
//!   `MSET` of value and version (0.4 µs of server time against 6.3 µs for
//!   the script, measured): the store knows when it watches itself, and asks the
//!   server (`PUBSUB NUMPAT`) at most every 500 ms about other watchers, so a
//!   watcher elsewhere sees such writes, for at most that long, the way it
//!   sees other clients' writes. Writes by other clients are seen through the
//!   notification and their value is read when it arrives (a value removed
//!   in between is reported by its `Removed` event only). In Cluster mode the
//!   watcher follows the primaries as the topology changes. A watcher
//!   converges (its last event for a key matches the key's final state) and
//!   loses nothing unless it yields an error saying so: after falling
//!   behind, after a reconnect, after a Cluster topology change (README).
//!   Read afresh after such an error if that matters; the stream goes on.
//!
//! # Connections, retries and the "never twice" rule
//!
//! The store connects when built ([`RedisStateStore::connect`],
//! [`RedisStoreBuilder::connect`]) and then keeps the connection with a
//! reconnect policy (exponential backoff from 100 ms to 2 s, unlimited
//! attempts, by default). fred's `max_command_attempts` is set to **1**: a
//! command that was written to a connection that then broke is failed to the
//! caller (`Unavailable`), never re-sent, so a write is never applied twice.
//! Commands issued while the connection is down wait for the reconnect
//! (they were never written, so sending them later is safe) for at most the
//! command timeout (5 s by default), after which they fail with `Timeout` and
//! are dropped unsent. An `Unavailable` or `Timeout` error on a write therefore
//! means "may or may not be applied": check with `get_entry` before retrying a
//! conditional write.
//!
//! Redis's own limit stays: replication is asynchronous, so when a replica is
//! promoted (a master crashes, or even a `SENTINEL FAILOVER`, which does not
//! pause writes on the old master) the last writes the old master
//! acknowledged can be lost. Behind Sentinel the store subscribes to
//! `+switch-master` and reconnects to the new master as soon as the switch is
//! announced. Waiting for replicas closes the window: a write is acknowledged
//! only once a replica has it (`WAIT`), so a promoted replica has every
//! acknowledged write, at the price of a replication round trip per write and
//! of failing writes while no replica is connected. It is **on by default
//! behind Sentinel** (one replica, 500 ms, [`DEFAULT_SENTINEL_WAIT`]) and off
//! otherwise; [`RedisStoreBuilder::wait_for_replicas`] sets it either way
//! (`wait_for_replicas(0, ..)` turns it off).
//!
//! A store built from your own [`fred::clients::Client`] or
//! [`fred::clients::Pool`] keeps your settings; it logs a warning when they
//! allow re-sends.

pub use fred;

mod builder;
mod entries;
mod error;
mod etag;
mod list;
mod replicas;
mod scripts;
mod sentinel;
mod store;
mod transaction;
mod watch;

pub use builder::{DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, RedisStoreBuilder};
pub use replicas::DEFAULT_SENTINEL_WAIT;
pub use store::{RedisStateStore, STORE_NAME};
