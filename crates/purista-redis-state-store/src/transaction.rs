//! Transactions: one script checks every condition, then makes every write
//! (all or nothing); in Cluster all keys must share a hash slot.

use bytes::Bytes;
use fred::types::{Key, Value};
use purista_core::{Error, ErrorKind, Op, Result};

use crate::{
    RedisStateStore,
    entries::{script_mode, ttl_ms},
    etag::{next_version, version_key},
    scripts::{self, TRANSACTION},
};

pub(crate) async fn apply(store: &RedisStateStore, ops: Vec<Op>) -> Result<()> {
    if store.is_cluster() {
        same_slot(&ops)?;
    }
    let mut keys = Vec::with_capacity(ops.len() * 2);
    let mut args = Vec::with_capacity(ops.len() * 4 + 2);
    args.push(Value::from(i64::from(store.db())));
    // One version for every write of the transaction: a key keeps only its
    // last write, and each transaction draws a new one.
    args.push(Value::from(next_version()));
    for op in &ops {
        keys.push(Key::from(op.key()));
        keys.push(Key::from(version_key(op.key())?));
        let (kind, tag, ttl, value) = match op {
            Op::Put { value, options, .. } => {
                let (kind, tag) = script_mode(&options.mode);
                let ttl = ttl_ms(options).map(|t| t.to_string()).unwrap_or_default();
                (kind, tag, ttl, value.clone().into_bytes())
            }
            Op::Remove { etag: None, .. } => ("D", "", String::new(), Bytes::new()),
            Op::Remove { etag: Some(t), .. } => ("E", t.as_str(), String::new(), Bytes::new()),
        };
        args.extend([Value::from(kind), Value::from(tag), Value::from(ttl), Value::Bytes(value)]);
    }
    match scripts::run_write(store, &TRANSACTION, keys, args, |v| !matches!(v, Value::Array(_))).await? {
        Value::Array(parts) => {
            let step = parts.first().and_then(Value::as_i64).unwrap_or(0);
            let key = usize::try_from(step - 1).ok().and_then(|i| ops.get(i)).map_or("", |op| op.key());
            // The failed step's kind: a create found a value, else an ETag did not match.
            match parts.get(1).and_then(Value::as_str).as_deref() {
                Some("C") => Err(Error::already_exists(key)),
                _ => Err(Error::etag_mismatch(key)),
            }
        }
        _ => Ok(()),
    }
}

/// Refuses, before anything is sent, a transaction whose keys span Cluster
/// hash slots (a script may touch one slot only).
fn same_slot(ops: &[Op]) -> Result<()> {
    let Some(first) = ops.first() else { return Ok(()) };
    let slot = fred::util::redis_keyslot(first.key().as_bytes());
    match ops.iter().find(|op| fred::util::redis_keyslot(op.key().as_bytes()) != slot) {
        None => Ok(()),
        Some(other) => {
            let msg = format!(
                "in Redis Cluster all keys of one transaction must share a hash slot: {:?} and {:?} do not \
                 (give them a common {{hash tag}}, e.g. \"{{order:7}}:items\" and \"{{order:7}}:total\")",
                first.key(),
                other.key()
            );
            Err(Error::new(ErrorKind::InvalidArgument, msg))
        }
    }
}
