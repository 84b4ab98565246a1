//! Transactions: one `ExecuteStateTransaction`, and the key a failed one
//! conflicted on (Dapr does not name it).

use std::collections::HashMap;

use dapr::dapr::proto::runtime::v1::{ExecuteStateTransactionRequest, TransactionalStateOperation};
use purista_core::{ETag, Error, ErrorKind, Op, PutMode, Result};
use tonic::{Code, Status};

use crate::{
    DaprStateStore,
    error::{from_status, kind_of},
    store::Item,
};

impl DaprStateStore {
    /// Runs `ops` as one transaction, all or nothing. A failure about an
    /// ETag is `Conflict`, naming the key found by [`conflicting_key`](Self::conflicting_key).
    pub(crate) async fn execute(&self, ops: Vec<Op>) -> Result<()> {
        let operations = ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, options } => TransactionalStateOperation {
                    operation_type: "upsert".into(),
                    request: Some(self.state_item(key, Item::Write { value: value.clone(), options })),
                },
                Op::Remove { key, etag } => TransactionalStateOperation {
                    operation_type: "delete".into(),
                    request: Some(self.state_item(key, Item::Delete { etag: etag.as_ref() })),
                },
            })
            .collect();
        let req = self.conn.request(ExecuteStateTransactionRequest {
            store_name: self.settings.store_name.clone(),
            operations,
            metadata: HashMap::new(),
        });
        let status = match self.conn.client().execute_state_transaction(req).await {
            Ok(_) => return Ok(()),
            Err(status) if kind_of(&status) == ErrorKind::Timeout => {
                return Err(self.conn.failed(status, "transaction", None));
            }
            Err(status) => status,
        };
        if !about_an_etag(&status) {
            return Err(from_status(status, "transaction", None));
        }
        let message = format!("dapr transaction: {}", status.message());
        let source = from_status(status, "transaction", None);
        let error = Error::new(ErrorKind::Conflict, message).with_source(source);
        Err(match self.conflicting_key(&ops).await {
            Some(key) => error.with_key(key),
            None => error,
        })
    }

    /// Names the key a failed transaction conflicted on: reads the keys its
    /// conditions are on and replays the steps over them.
    async fn conflicting_key(&self, ops: &[Op]) -> Option<String> {
        let conditioned: Vec<&str> = ops.iter().filter(|op| has_condition(op)).map(Op::key).collect();
        match conditioned[..] {
            [] => return None,
            [only] => return Some(only.to_string()),
            _ => {}
        }
        let etags = self.read_etags(&conditioned).await.ok()?;
        let held = conditioned.into_iter().zip(etags).map(|(key, etag)| (key, Held::read(etag))).collect();
        first_conflict(ops, held).map(str::to_string)
    }
}

/// Whether a failed transaction is about an ETag: Dapr answers a mismatch
/// `Aborted` or `Internal` ("possible etag mismatch"), and an ETag the store
/// could never have issued `InvalidArgument` ("invalid etag value").
fn about_an_etag(status: &Status) -> bool {
    match status.code() {
        Code::Aborted => true,
        Code::InvalidArgument | Code::Internal => status.message().to_ascii_lowercase().contains("etag"),
        _ => false,
    }
}

fn has_condition(op: &Op) -> bool {
    match op {
        Op::Put { options, .. } => options.mode != PutMode::Upsert,
        Op::Remove { etag, .. } => etag.is_some(),
    }
}

/// What a key holds at a step of the replay.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Held {
    /// Nothing.
    Absent,
    /// A value under this ETag.
    At(String),
    /// A value an earlier step wrote, under an ETag only the store knows.
    Written,
}

impl Held {
    fn read(etag: Option<String>) -> Held {
        etag.map_or(Held::Absent, Held::At)
    }

    fn is_at(&self, etag: &ETag) -> bool {
        matches!(self, Held::At(t) if t == etag.as_str())
    }
}

/// The first step whose condition fails against what the earlier steps
/// leave, starting from `held` (every key a condition is on; a step on
/// another key has no condition, so it cannot fail).
fn first_conflict<'a>(ops: &'a [Op], mut held: HashMap<&str, Held>) -> Option<&'a str> {
    for op in ops {
        let Some(now) = held.get_mut(op.key()) else { continue };
        let (fails, after) = match op {
            Op::Put { options, .. } => {
                let fails = match &options.mode {
                    PutMode::Upsert => false,
                    PutMode::Create => *now != Held::Absent,
                    PutMode::Update(etag) => !now.is_at(etag),
                };
                (fails, Held::Written)
            }
            Op::Remove { etag, .. } => (etag.as_ref().is_some_and(|t| !now.is_at(t)), Held::Absent),
        };
        if fails {
            return Some(op.key());
        }
        *now = after;
    }
    None
}

#[cfg(test)]
mod tests {
    use purista_core::{Json, PutOptions};

    use super::*;

    fn held(pairs: &[(&'static str, Held)]) -> HashMap<&'static str, Held> {
        pairs.iter().cloned().collect()
    }

    #[test]
    fn the_replay_sees_earlier_steps() {
        let v = || Json::from(serde_json::json!(1));
        // Removed, then created: no conflict; then an update under the old tag fails.
        let ops = vec![
            Op::remove_if("a", ETag::new("1")),
            Op::put_with("a", v(), PutOptions::create()),
            Op::put_with("b", v(), PutOptions::update(ETag::new("7"))),
            Op::put_with("a", v(), PutOptions::update(ETag::new("1"))),
        ];
        let start = held(&[("a", Held::At("1".into())), ("b", Held::At("7".into()))]);
        assert_eq!(first_conflict(&ops, start), Some("a"));
        // A stale tag fails at once.
        let start = held(&[("a", Held::At("2".into())), ("b", Held::At("7".into()))]);
        assert_eq!(first_conflict(&ops[..3], start), Some("a"));
        // Nothing fails: the conflict was elsewhere (or is gone).
        let start = held(&[("a", Held::At("1".into())), ("b", Held::At("7".into()))]);
        assert_eq!(first_conflict(&ops[..3], start), None);
        // An update of a missing key; a create over a value.
        let start = held(&[("a", Held::Absent), ("b", Held::Absent)]);
        assert_eq!(first_conflict(&ops[1..3], start), Some("b"));
        let start = held(&[("a", Held::At("3".into())), ("b", Held::At("7".into()))]);
        assert_eq!(first_conflict(&ops[1..3], start), Some("a"));
    }
}
