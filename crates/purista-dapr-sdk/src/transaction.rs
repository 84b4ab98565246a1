//! Transactions: one `ExecuteStateTransaction`, and the key a failed one
//! conflicted on (Dapr does not name it).

use std::collections::HashMap;

use dapr::dapr::proto::runtime::v1::{ExecuteStateTransactionRequest, TransactionalStateOperation};
use purista_core::{
    Error, ErrorKind, Op, PutMode, Result,
    backend::{Holds, check_steps},
};
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
        let stored: HashMap<&str, Option<String>> = conditioned.into_iter().zip(etags).collect();
        let conflict = check_steps(ops, |_, key| match stored.get(key) {
            Some(Some(etag)) => Holds::Tag(etag.clone()),
            Some(None) => Holds::Absent,
            // No step on this key has a condition.
            None => Holds::Unjudged,
        });
        conflict.err()?.key().map(str::to_string)
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
