//! Transactions: one script checks every condition, then makes every write
//! (all or nothing); in Cluster all keys must share a hash slot.
//!
//! The server judges only the condition of each key's first step (against
//! the stored state); core's [`check_steps`] judges the later ones here
//! (against what the earlier steps left, which does not depend on the stored
//! state). The script reads every key before it writes any, and a remove
//! that a later step on its key supersedes is left out, so that no key is
//! touched after it is removed: while its slot migrates, a node refuses a
//! command on a key it no longer holds, and the script would stop half-way
//! with its earlier writes kept. The other writes are all made, in order,
//! so that watchers see each value written.

use std::collections::{HashMap, HashSet};

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
    if steps.is_empty() {
        return local.map_or(Ok(()), Err);
    }
    let mut keys = Vec::with_capacity(steps.len() * 2);
    let mut args = Vec::with_capacity(steps.len() * 5 + 2);
    args.push(Value::from(i64::from(store.db())));
    // One version for every write of the transaction: a key keeps only its
    // last write, and each transaction draws a new one.
    args.push(Value::from(next_version()));
    for (op, (judged, written)) in steps.iter().zip(plan(steps)) {
        keys.push(Key::from(op.key()));
        keys.push(Key::from(version_key(op.key())?));
        let (cond, tag) = if judged { condition(op) } else { ("-", "") };
        let (write, ttl, value) =
            if written && local.is_none() { effect(op) } else { ("-", String::new(), Bytes::new()) };
        args.extend([cond, tag, write].map(Value::from));
        args.extend([Value::from(ttl), Value::Bytes(value)]);
    }
    let wrote = |v: &Value| !matches!(v, Value::Array(_));
    match scripts::run_write(store, &TRANSACTION, keys, args, wrote).await? {
        Value::Array(parts) => {
            let step = parts.first().and_then(Value::as_i64).unwrap_or(0);
            let key = usize::try_from(step - 1).ok().and_then(|i| steps.get(i)).map_or("", Op::key);
            // The failed condition: a create found a value, else an ETag did not match.
            match parts.get(1).and_then(Value::as_str).as_deref() {
                Some("C") => Err(Error::already_exists(key)),
                _ => Err(Error::etag_mismatch(key)),
            }
        }
        _ => local.map_or(Ok(()), Err),
    }
}

/// For each step: whether the server judges its condition (the first step
/// on its key), and whether the script makes its write (all but a remove
/// followed by another step on its key, which leaves the same state).
fn plan(steps: &[Op]) -> Vec<(bool, bool)> {
    let last: HashMap<&str, usize> = steps.iter().enumerate().map(|(i, op)| (op.key(), i)).collect();
    let mut seen = HashSet::new();
    let plan = steps.iter().enumerate().map(|(i, op)| {
        let superseded = matches!(op, Op::Remove { .. }) && last.get(op.key()) != Some(&i);
        (seen.insert(op.key()), !superseded)
    });
    plan.collect()
}

/// The condition of a key's first step, for the server to judge: kind
/// (`-` none) and ETag.
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

/// What a step writes: `P` with TTL and value, or `D`.
fn effect(op: &Op) -> (&'static str, String, Bytes) {
    match op {
        Op::Put { value, options, .. } => {
            let ttl = ttl_ms(options).map(|t| t.to_string()).unwrap_or_default();
            ("P", ttl, value.clone().into_bytes())
        }
        Op::Remove { .. } => ("D", String::new(), Bytes::new()),
    }
}

/// The first step that fails against what the earlier steps left, whatever
/// the stored state (first steps on a key pass here: the server judges
/// them), with its error.
fn local_conflict(ops: &[Op]) -> Option<(usize, Error)> {
    let unjudged = |_, _: &str| Holds::Unjudged;
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
    fn the_server_judges_first_steps_and_skips_superseded_removes() {
        let create = Op::put_with("a", Json::encode(&1).unwrap(), PutOptions::create());
        let ops =
            vec![create, Op::remove_if("b", ETag::new("t")), Op::remove("a"), put("b", 3), Op::remove("a")];
        let plan = plan(&ops);
        assert_eq!(plan, [(true, true), (true, false), (false, false), (false, true), (false, true)]);
        assert_eq!((condition(&ops[0]), condition(&ops[1])), (("C", ""), ("E", "t")));
        assert_eq!((effect(&ops[3]).0, effect(&ops[4]).0), ("P", "D"));
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
