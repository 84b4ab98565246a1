//! Transactions: one script checks every condition, then makes every write
//! (all or nothing); in Cluster all keys must share a hash slot.
//!
//! The steps are collapsed per key before they are sent: the server judges
//! only each key's first condition (against the stored state), core's
//! [`check_steps`] judges the later ones (against what the earlier steps
//! left, which does not depend on the stored state), and the script writes
//! only each key's final state. So the script reads every key before it
//! writes any and touches each key once after reading: while its slot
//! migrates, a node refuses a command on a key it does not hold, and a key
//! removed and touched again by one script would fail half-way, with its
//! earlier writes kept.

use std::collections::HashMap;

use bytes::Bytes;
use fred::types::{Key, Value};
use purista_core::{
    Error, ErrorKind, Op, PutMode, Result,
    backend::{Holds, check_steps},
};

use crate::{
    RedisStateStore,
    entries::ttl_ms,
    etag::{next_version, version_key},
    scripts::{self, TRANSACTION},
};

pub(crate) async fn apply(store: &RedisStateStore, ops: Vec<Op>) -> Result<()> {
    if store.is_cluster() {
        same_slot(&ops)?;
    }
    // A later step that fails whatever is stored: the transaction fails, but
    // a condition the server judges on an earlier step may fail first, so
    // those are still checked (and nothing is written).
    let (steps, local) = match local_conflict(&ops) {
        Some((step, err)) => (&ops[..step], Some(err)),
        None => (&ops[..], None),
    };
    let keys = collapse(steps);
    if keys.is_empty() {
        return local.map_or(Ok(()), Err);
    }
    let mut names = Vec::with_capacity(keys.len() * 2);
    let mut args = Vec::with_capacity(keys.len() * 5 + 2);
    args.push(Value::from(i64::from(store.db())));
    // One version for every write of the transaction: each transaction
    // draws a new one.
    args.push(Value::from(next_version()));
    for k in &keys {
        names.push(Key::from(k.key));
        names.push(Key::from(version_key(k.key)?));
        let (cond, tag) = condition(k.first);
        let (last, ttl, value) =
            if local.is_some() { ("-", String::new(), Bytes::new()) } else { outcome(k.last) };
        args.extend([cond, tag, last].map(Value::from));
        args.extend([Value::from(ttl), Value::Bytes(value)]);
    }
    let wrote = |v: &Value| !matches!(v, Value::Array(_));
    match scripts::run_write(store, &TRANSACTION, names, args, wrote).await? {
        Value::Array(parts) => {
            let at = parts.first().and_then(Value::as_i64).unwrap_or(0);
            let key = usize::try_from(at - 1).ok().and_then(|i| keys.get(i)).map_or("", |k| k.key);
            // The failed condition: a create found a value, else an ETag did not match.
            match parts.get(1).and_then(Value::as_str).as_deref() {
                Some("C") => Err(Error::already_exists(key)),
                _ => Err(Error::etag_mismatch(key)),
            }
        }
        _ => local.map_or(Ok(()), Err),
    }
}

/// One key's share of a transaction: its first step (whose condition the
/// server judges) and its last (what the key is left with).
struct Collapsed<'a> {
    key: &'a str,
    first: &'a Op,
    last: &'a Op,
}

/// The condition the server judges on a key's first step: kind (`-` none)
/// and ETag.
fn condition(op: &Op) -> (&'static str, &str) {
    match op {
        Op::Put { options, .. } => match &options.mode {
            PutMode::Upsert => ("-", ""),
            PutMode::Create => ("C", ""),
            PutMode::Update(tag) => ("U", tag.as_str()),
        },
        Op::Remove { etag: None, .. } => ("-", ""),
        Op::Remove { etag: Some(tag), .. } => ("E", tag.as_str()),
    }
}

/// What a key's last step leaves: `P` with TTL and value, or `D`.
fn outcome(op: &Op) -> (&'static str, String, Bytes) {
    match op {
        Op::Put { value, options, .. } => {
            let ttl = ttl_ms(options).map(|t| t.to_string()).unwrap_or_default();
            ("P", ttl, value.clone().into_bytes())
        }
        Op::Remove { .. } => ("D", String::new(), Bytes::new()),
    }
}

/// The keys of `ops` in the order of their first steps, so the server
/// judges the first conditions in step order.
fn collapse(ops: &[Op]) -> Vec<Collapsed<'_>> {
    let mut at: HashMap<&str, usize> = HashMap::new();
    let mut keys: Vec<Collapsed<'_>> = Vec::new();
    for op in ops {
        match at.get(op.key()) {
            Some(&i) => keys[i].last = op,
            None => {
                at.insert(op.key(), keys.len());
                keys.push(Collapsed { key: op.key(), first: op, last: op });
            }
        }
    }
    keys
}

/// The first step that fails against what the earlier steps left, whatever
/// the stored state (first steps on a key pass here: the server judges
/// them), with its error.
fn local_conflict(ops: &[Op]) -> Option<(usize, Error)> {
    let unjudged = |_: &str| Holds::Unjudged;
    let err = check_steps(ops, unjudged).err()?;
    // `check_steps` stops at the first conflict: a prefix fails once it
    // holds that step.
    let lens: Vec<usize> = (1..=ops.len()).collect();
    let step = lens.partition_point(|&n| check_steps(&ops[..n], unjudged).is_ok());
    Some((step, err))
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

#[cfg(test)]
mod tests {
    use purista_core::{ETag, Json, PutOptions};

    use super::*;

    fn put(k: &str, n: i64) -> Op {
        Op::put(k, Json::encode(&n).unwrap())
    }

    #[test]
    fn each_key_keeps_its_first_condition_and_its_last_step() {
        let create = Op::put_with("a", Json::encode(&1).unwrap(), PutOptions::create());
        let ops = vec![create, Op::remove_if("b", ETag::new("t")), put("a", 2), Op::remove("a"), put("b", 3)];
        let keys = collapse(&ops);
        let got: Vec<_> = keys.iter().map(|k| (k.key, condition(k.first), outcome(k.last).0)).collect();
        assert_eq!(got, [("a", ("C", ""), "D"), ("b", ("E", "t"), "P")]);
        assert!(collapse(&[]).is_empty());
    }

    #[test]
    fn a_later_step_is_judged_against_the_earlier_ones() {
        assert!(local_conflict(&[Op::remove("a"), put("a", 1), put("b", 1)]).is_none());
        // A first step passes here: the server judges it.
        assert!(local_conflict(&[Op::remove_if("a", ETag::new("t"))]).is_none());
        let ops =
            [put("a", 1), put("b", 1), Op::remove("b"), Op::remove_if("b", ETag::new("t")), put("a", 2)];
        let (step, err) = local_conflict(&ops).expect("a conflict");
        assert_eq!((step, err.kind(), err.key()), (3, ErrorKind::Conflict, Some("b")));
        let ops = [put("a", 1), Op::put_with("a", Json::encode(&2).unwrap(), PutOptions::create())];
        assert_eq!(local_conflict(&ops).map(|(step, _)| step), Some(1));
    }
}
