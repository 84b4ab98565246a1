//! PURISTA's state store on a NATS JetStream key-value bucket, through
//! [`async_nats`] (re-exported).
//!
//! [`NatsStateStore`] is a [`purista_core::StateStore`]: values are the JSON
//! bytes, as PURISTA's TypeScript `NatsStateStore` writes them, in the bucket
//! `purista-state-store` unless told otherwise (created if missing). On top of
//! PURISTA it has per-key TTL (nats-server 2.11+), revisions as ETags
//! (create-only, update-if-revision, remove-if-revision), atomic transactions
//! (nats-server 2.12+ atomic batch publish), and listing and watching by key
//! prefix. Any key the contract accepts works, through the reversible mapping
//! described in [`key`].
//!
//! ```no_run
//! use purista_core::{Service, StateStoreExt};
//! use purista_nats_state_store::NatsStateStore;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = NatsStateStore::builder().server("nats://127.0.0.1:4222").connect().await?;
//!
//! let service = Service::builder("counter", "1")
//!     .state_store(store)
//!     .command("hit", |ctx, page: String| async move {
//!         let key = format!("hits:{page}");
//!         let hits = ctx.states.update(&key, None, |n: Option<u64>| n.unwrap_or(0) + 1).await?;
//!         Ok(hits)
//!     })
//!     .build();
//!
//! let hits: u64 = service.invoke("hit", &"home").await?;
//! assert!(hits >= 1);
//! service.destroy().await?;
//! # Ok(()) }
//! ```
//!
//! # Mapping onto JetStream KV
//!
//! | contract                   | NATS                                                            |
//! |----------------------------|-----------------------------------------------------------------|
//! | value                      | the JSON bytes, as the message payload                          |
//! | key                        | [`key::encode`]d; `$KV.<bucket>.<encoded key>`                   |
//! | ETag                       | the entry's revision (stream sequence), in decimal               |
//! | `PutMode::Create`          | `Nats-Expected-Last-Subject-Sequence: 0` (or the delete marker's) |
//! | `PutMode::Update(etag)`    | `Nats-Expected-Last-Subject-Sequence: <etag>`                    |
//! | TTL                        | `Nats-TTL: <seconds>` on the publish, rounded up to whole seconds |
//! | remove                     | a `DEL` marker, or a purge ([`RemoveMode`]); nothing if no value |
//! | transaction                | one atomic batch (`Nats-Batch-Id`, `-Sequence`, `-Commit`)       |
//! | list                       | an ephemeral pull consumer, `no_wait` batches, headers only      |
//! | watch                      | an ordered consumer on `$KV.<bucket>.>` or whole leading tokens   |
//! | expired (watch)            | the server's delete marker with `Nats-Marker-Reason: MaxAge`     |
//! | get (one replica)          | a direct get; the stream's own answer counts, else the leader's  |
//! | get (replicated bucket)    | `STREAM.MSG.GET`, answered by the stream leader                  |
//! | `get_state` (one replica)  | one batched direct get (`multi_last`) per up to 1024 names        |
//! | `get_state` (replicated)   | the leader's last sequence S, then the batch from a replica at S  |
//!
//! # Reads are linearizable
//!
//! A read that starts after a write was acknowledged sees it (or something
//! newer). On a bucket whose stream has more than one replica, reads go
//! through the stream leader, as a direct get may be answered by a follower
//! that has not applied the write yet. A one-replica bucket keeps direct
//! gets, its only replica being the leader; a mirror of the bucket taking
//! part in its direct gets is recognised by the `Nats-Stream` header, and
//! its answers (and misses, which name no stream) are asked again at the
//! leader. [`replica_reads`](NatsStateStoreBuilder::replica_reads) opts into
//! direct gets from any replica for read throughput, at the price of reads
//! that may return a value older than one already acknowledged. The choice
//! is made at connect, from the bucket's replica count then.
//!
//! # `get_state`: one request, one point in time
//!
//! `get_state` sends one JetStream batched direct get (ADR-31 `multi_last`,
//! nats-server 2.11+) for up to 1024 distinct names, fewer when they are long
//! (a request stays within the server's max payload). The server answers a
//! request from one state of the stream, so the names it reads are seen at
//! one point in time: never one key before a concurrent write and another
//! after it. More names take several requests, one after the other, each its
//! own point in time, and so does the rest of an answer the server cut at its
//! byte limit (`max_pending`, 64 MiB by default). Later requests are not
//! pinned to the first one's sequence (`up_to_seq`): with history 1, a key
//! written in between keeps no message at or before that sequence and would
//! read as missing. On a replicated bucket (without replica reads) the store
//! first asks the stream leader for its last message's sequence S, and takes
//! the batched answer only from a replica that is at or past S and has no
//! asked name past S: the stream at S, after the call started (else leader
//! gets per name on the same condition; a few tries, then `Unavailable`).
//! With an older server, or a bucket whose stream does not allow direct gets
//! (decided at connect), names are read one by one, concurrently, each at
//! its own point in time. Either way each request waits
//! at most the connection's request timeout (10 s if it has none).
//!
//! Errors keep the async-nats error as their [`source`](std::error::Error::source);
//! a server without JetStream gives [`NO_JETSTREAM`] (kind `Unavailable`).
//! Credentials never appear in errors or `Debug` output.

pub use async_nats;

mod batch_get;
mod bucket;
mod builder;
mod entry;
mod error;
pub mod key;
mod list;
mod reads;
mod store;
mod transaction;
mod write;

pub use bucket::{BucketSettings, DEFAULT_BUCKET, Storage};
pub use builder::{NatsStateStoreBuilder, RemoveMode};
pub use error::NO_JETSTREAM;
pub use key::MAX_NATS_KEY_BYTES;
pub use store::NatsStateStore;
pub use transaction::MAX_TRANSACTION_OPS;
