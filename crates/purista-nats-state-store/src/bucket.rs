//! The bucket: its settings, opening it (use it as it is, create it in one
//! step, or bring it to the settings the caller asked for), and what it and
//! the server support.
//!
//! Creation is one `STREAM.CREATE` with the final config (atomic publish
//! included): the server answers an identical create with the existing
//! stream, so any number of instances may create the same bucket at once.
//! A create that finds the name taken with another config (10058: another
//! version, another client) reads the bucket back and uses it as it is.

use std::time::Duration;

use async_nats::{
    Client,
    jetstream::{
        self, ErrorCode,
        context::{KeyValueError, KeyValueErrorKind},
        kv,
        stream::{self, DiscardPolicy, StorageType},
    },
};
use purista_core::{Capabilities, Capability, Error, ErrorKind, Result};

use crate::{NO_JETSTREAM, error};

/// PURISTA's default bucket name.
pub const DEFAULT_BUCKET: &str = "purista-state-store";

/// The JetStream API prefix of the store's context (`jetstream::new`: no
/// domain, no custom prefix); async-nats does not expose it.
pub(crate) const JS_API: &str = "$JS.API";
/// Per-key TTLs are whole seconds (`Nats-TTL`); core rounds up to this.
const TTL_GRANULARITY: Duration = Duration::from_secs(1);
/// Room left for headers when reporting the largest value.
const HEADER_RESERVE: usize = 512;

/// Where the bucket keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Storage {
    /// On disk (JetStream's default): survives server restarts.
    #[default]
    File,
    /// In memory: lost when the server stops.
    Memory,
}

/// Settings used when the store creates its bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSettings {
    /// Revisions kept per key (1..=64; PURISTA's default 1).
    pub history: i64,
    /// Copies in a cluster (1, 3 or 5).
    pub replicas: usize,
    /// File or memory storage.
    pub storage: Storage,
    /// The largest value in bytes, `None` for the server's limit.
    pub max_value_size: Option<i32>,
    /// Allow per-key TTLs (`limit_markers`, nats-server 2.11+); the value is
    /// how long the server's expiry markers stay (at least 1 s).
    pub ttl_markers: Option<Duration>,
    /// Allow atomic batch publishing, for transactions (nats-server 2.12+).
    pub atomic_publish: bool,
}

impl Default for BucketSettings {
    fn default() -> Self {
        BucketSettings {
            history: 1,
            replicas: 1,
            storage: Storage::File,
            max_value_size: None,
            ttl_markers: Some(Duration::from_secs(60)),
            atomic_publish: true,
        }
    }
}

/// Which settings the caller chose (and so may change on an existing bucket).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Chosen {
    pub history: bool,
    pub replicas: bool,
    pub max_value_size: bool,
    pub ttl_markers: bool,
}

impl Chosen {
    pub(crate) const ALL: Chosen =
        Chosen { history: true, replicas: true, max_value_size: true, ttl_markers: true };
}

/// Why the capabilities that depend on the server or the bucket are
/// missing; `None` where they are there.
#[derive(Debug, Clone, Default)]
pub(crate) struct Missing {
    pub ttl: Option<String>,
    pub transactions: Option<String>,
}

impl Missing {
    pub(crate) fn reason(&self, capability: Capability) -> Option<&str> {
        match capability {
            Capability::Ttl => self.ttl.as_deref(),
            Capability::Transactions => self.transactions.as_deref(),
            _ => None,
        }
    }
}

/// An open bucket.
pub(crate) struct Opened {
    pub js: jetstream::Context,
    pub kv: kv::Store,
    pub missing: Missing,
}

impl Opened {
    /// What the store supports on this bucket, with values up to what the
    /// bucket and the connection (`max_payload`) take.
    pub(crate) fn capabilities(&self, max_payload: usize) -> Capabilities {
        let limit = match self.kv.stream.cached_info().config.max_message_size {
            n if n > 0 => (n as usize).min(max_payload),
            _ => max_payload,
        };
        Capabilities {
            etag: true,
            create_only: true,
            ttl: self.missing.ttl.is_none().then_some(TTL_GRANULARITY),
            transactions: self.missing.transactions.is_none(),
            list: true,
            watch: true,
            watch_stall: Some(crate::list::STALL_REPORTED),
            // By compare-and-swap on revisions (core's default).
            counters: true,
            max_value_bytes: (limit > 0).then(|| limit.saturating_sub(HEADER_RESERVE)),
            reserved_in_keys: &[],
            max_transaction_ops: Some(crate::MAX_TRANSACTION_OPS),
            ..Capabilities::default()
        }
    }
}

pub(crate) async fn open(
    client: &Client,
    bucket: &str,
    settings: &BucketSettings,
    chosen: Chosen,
    update: bool,
) -> Result<Opened> {
    let server = client.server_info();
    if !server.jetstream {
        return Err(Error::new(ErrorKind::Unavailable, NO_JETSTREAM));
    }
    let version = version(&server.version);
    let js = jetstream::new(client.clone());
    let store = match js.get_key_value(bucket).await {
        Ok(store) if update => reconfigure(&js, store, settings, chosen, version).await?,
        Ok(store) => store,
        Err(e) if e.kind() == KeyValueErrorKind::InvalidStoreName => {
            let msg = format!("{bucket:?} is not a usable bucket name ([a-zA-Z0-9_-]+, a KV bucket)");
            return Err(Error::new(ErrorKind::InvalidArgument, msg).with_source(e));
        }
        Err(e) if is_not_found(&e) => create(&js, bucket, settings, version).await?,
        Err(e) => return Err(error::wrap("bucket lookup", None, e)),
    };
    let stream = &store.stream.cached_info().config;
    let ttl = if version < (2, 11) {
        Some(format!("per-key TTL needs nats-server 2.11 or later, the server is {}", server.version))
    } else if !stream.allow_message_ttl {
        Some(format!(
            "per-key TTL needs a bucket with per-message TTL allowed (limit_markers); bucket {bucket:?} has it off"
        ))
    } else {
        None
    };
    let transactions = if version < (2, 12) {
        Some(format!(
            "transactions need atomic batch publish, nats-server 2.12 or later; the server is {}",
            server.version
        ))
    } else if !stream.allow_atomic_publish {
        Some(format!("transactions need atomic batch publish, which bucket {bucket:?} does not allow"))
    } else {
        None
    };
    Ok(Opened { js, kv: store, missing: Missing { ttl, transactions } })
}

/// The stream of a KV bucket as async-nats's `create_key_value` builds it,
/// with per-message TTL and atomic publish as the settings and the server allow.
fn stream_config(bucket: &str, settings: &BucketSettings, version: (u32, u32)) -> stream::Config {
    let markers = settings.ttl_markers.filter(|_| version >= (2, 11));
    stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: settings.history.max(1),
        max_message_size: settings.max_value_size.unwrap_or(-1),
        storage: match settings.storage {
            Storage::File => StorageType::File,
            Storage::Memory => StorageType::Memory,
        },
        num_replicas: settings.replicas.max(1),
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        discard: DiscardPolicy::New,
        allow_message_ttl: markers.is_some(),
        subject_delete_marker_ttl: markers,
        allow_atomic_publish: settings.atomic_publish && version >= (2, 12),
        ..Default::default()
    }
}

async fn create(
    js: &jetstream::Context,
    bucket: &str,
    settings: &BucketSettings,
    version: (u32, u32),
) -> Result<kv::Store> {
    if !(1..=64).contains(&settings.history) {
        let msg = format!("bucket history must be 1..=64, got {}", settings.history);
        return Err(Error::new(ErrorKind::InvalidArgument, msg));
    }
    match js.create_stream(stream_config(bucket, settings, version)).await {
        Ok(_) => {}
        // Someone else created it first, with another config: it is an
        // existing bucket now, used as it is.
        Err(e)
            if error::jetstream_error(&e)
                .is_some_and(|js| js.error_code() == ErrorCode::STREAM_NAME_EXIST) =>
        {
            tracing::info!(bucket, "bucket created meanwhile with other settings; using it as it is");
        }
        Err(e) => return Err(error::wrap("bucket creation", None, e)),
    }
    js.get_key_value(bucket).await.map_err(|e| error::wrap("bucket lookup", None, e))
}

/// Brings an existing bucket to the chosen settings, keeping everything else
/// (history, replicas, value size, markers the caller did not choose).
/// Per-message TTL and atomic publish are only ever switched on: the server
/// refuses to switch TTLs off, and other clients may rely on either.
async fn reconfigure(
    js: &jetstream::Context,
    store: kv::Store,
    settings: &BucketSettings,
    chosen: Chosen,
    version: (u32, u32),
) -> Result<kv::Store> {
    let before = &store.stream.cached_info().config;
    let mut config = before.clone();
    if chosen.history {
        config.max_messages_per_subject = settings.history;
    }
    if chosen.replicas {
        config.num_replicas = settings.replicas;
    }
    if chosen.max_value_size {
        config.max_message_size = settings.max_value_size.unwrap_or(-1);
    }
    if let Some(markers) = settings.ttl_markers.filter(|_| version >= (2, 11))
        && (chosen.ttl_markers || !config.allow_message_ttl)
    {
        config.allow_message_ttl = true;
        config.subject_delete_marker_ttl = Some(markers);
    }
    if settings.atomic_publish && version >= (2, 12) {
        config.allow_atomic_publish = true;
    }
    if config == *before {
        return Ok(store);
    }
    js.update_stream(&config).await.map_err(|e| error::wrap("bucket update", None, e))?;
    js.get_key_value(&store.name).await.map_err(|e| error::wrap("bucket lookup", None, e))
}

fn is_not_found(e: &KeyValueError) -> bool {
    use jetstream::context::{GetStreamError, GetStreamErrorKind};
    use std::error::Error as _;
    e.kind() == KeyValueErrorKind::GetBucket
        && e.source().and_then(|s| s.downcast_ref::<GetStreamError>()).is_some_and(|s| {
            matches!(s.kind(), GetStreamErrorKind::JetStream(js)
                if js.error_code() == ErrorCode::STREAM_NOT_FOUND || js.code() == 404)
        })
}

/// How long the server keeps its expiry markers, if it writes them.
pub(crate) fn marker_ttl(store: &kv::Store) -> Option<Duration> {
    store.stream.cached_info().config.subject_delete_marker_ttl
}

/// `(major, minor)` of a server version string such as `2.15.1`.
pub(crate) fn version(v: &str) -> (u32, u32) {
    let mut parts = v.trim_start_matches('v').split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(version("2.15.1"), (2, 15));
        assert_eq!(version("v2.11.0-beta"), (2, 11));
        assert!(version("2.9.25") < (2, 11));
    }
}
