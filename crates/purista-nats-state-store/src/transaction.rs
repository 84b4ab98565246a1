//! Transactions: one atomic batch (`Nats-Batch-Id`, `-Sequence`, `-Commit`),
//! its conditions as expected revisions, and what a refused batch means.

use std::collections::HashMap;

use async_nats::{HeaderMap, HeaderValue, jetstream::context::PublishError};
use bytes::Bytes;
use purista_core::{Error, ErrorKind, Op, PutMode, Result};

use crate::{
    NatsStateStore,
    entry::{Current, KV_OPERATION, parse_etag},
    error::{self, contended, publish_error},
    key::{self, nats_key},
    write::{CREATE_ATTEMPTS, expect_revision, pause_to_resend},
};

/// The most messages one atomic batch may hold (nats-server's default limit).
pub const MAX_TRANSACTION_OPS: usize = 1000;

/// `Backend::transaction`: `ops` as one atomic batch. (Core calls it only
/// when the bucket allows atomic publish, with 1 to `MAX_TRANSACTION_OPS`
/// steps: the limit is declared in the capabilities.)
pub(crate) async fn run(store: &NatsStateStore, ops: Vec<Op>) -> Result<()> {
    // A batch refused only because a create-only step lost to another
    // delete marker (its key still absent) is built again.
    // A batch refused unchecked (another write to one of its keys in
    // flight on a clustered stream) was dropped whole: it is sent again.
    let mut lost = None;
    let mut resends = 0;
    let mut attempts = 0;
    while attempts < CREATE_ATTEMPTS {
        let batch = store.batch(&ops).await?;
        match store.commit(&ops, batch).await {
            Ok(()) => return Ok(()),
            Err(Refused::Error(e)) => return Err(e),
            Err(Refused::Unchecked(e)) => {
                if !pause_to_resend(&mut resends).await {
                    let first_key = ops.first().map(Op::key).unwrap_or_default();
                    return Err(publish_error(first_key, "transaction", e));
                }
            }
            Err(Refused::CreateLost(key)) => {
                lost = Some(key);
                attempts += 1;
            }
        }
    }
    Err(contended(lost.unwrap_or_default()))
}

/// A batch ready to go: its messages, and the revisions it expects.
pub(crate) struct Batch<'a> {
    messages: Vec<(String, HeaderMap, Bytes)>,
    checks: Vec<Check<'a>>,
}

/// A key's first step, expecting the key at `revision`.
struct Check<'a> {
    key: &'a str,
    revision: u64,
    /// A create-only step over what was absent (no message, or a marker).
    create: bool,
}

/// Why the server refused a batch.
pub(crate) enum Refused<'a> {
    /// A condition failed or the batch could not go: the caller's answer.
    Error(Error),
    /// Only a create-only step's marker was replaced by another, and its
    /// key is still absent: nothing was written, the batch may go again.
    CreateLost(&'a str),
    /// Refused before its conditions were checked: nothing was written, the
    /// batch may go again.
    Unchecked(PublishError),
}

/// What a step expects of its key, for the server to check: a revision,
/// and whether the step is create-only over what was absent; `None`: no
/// condition. The server sees only the conditions of a key's first step;
/// later steps are decided here from `earlier`, what the earlier steps on the
/// key leave (true: a value, false: none). `base`: the state of the keys of
/// create-only first steps.
fn condition(op: &Op, earlier: Option<bool>, base: &HashMap<&str, Current>) -> Result<Option<(u64, bool)>> {
    let key = op.key();
    Ok(match (op, earlier) {
        (Op::Put { options, .. }, Some(has_value)) => match &options.mode {
            PutMode::Create if has_value => return Err(Error::already_exists(key)),
            PutMode::Update(_) => return Err(Error::etag_mismatch(key)),
            PutMode::Upsert | PutMode::Create => None,
        },
        (Op::Remove { etag: Some(_), .. }, Some(_)) => return Err(Error::etag_mismatch(key)),
        (Op::Remove { etag: None, .. }, _) => None,
        (Op::Put { options, .. }, None) => match &options.mode {
            PutMode::Upsert => None,
            PutMode::Update(etag) => Some((parse_etag(key, etag)?, false)),
            PutMode::Create => match base.get(key) {
                Some(Current::Live { .. }) => return Err(Error::already_exists(key)),
                // A marker's revision, or 0 for no message at all.
                other => Some((other.map_or(0, Current::revision), true)),
            },
        },
        (Op::Remove { etag: Some(etag), .. }, None) => Some((parse_etag(key, etag)?, false)),
    })
}

impl NatsStateStore {
    /// The messages of `ops`, reading the keys of create-only steps first.
    pub(crate) async fn batch<'a>(&self, ops: &'a [Op]) -> Result<Batch<'a>> {
        // What the steps so far leave on each key (true: a value).
        let mut touched: HashMap<&str, bool> = HashMap::new();
        let mut creates = Vec::new();
        for op in ops {
            if let Op::Put { key, options, .. } = op
                && options.mode == PutMode::Create
                && !touched.contains_key(key.as_str())
            {
                creates.push(key.as_str());
            }
            touched.insert(op.key(), matches!(op, Op::Put { .. }));
        }
        let currents = futures_util::future::try_join_all(creates.iter().map(|k| async move {
            let current = self.current(k, &nats_key(k)?).await?;
            Ok::<_, Error>((*k, current))
        }))
        .await?;
        let create_base: HashMap<&str, Current> = currents.into_iter().collect();
        touched.clear();

        let mut messages = Vec::with_capacity(ops.len());
        let mut checks = Vec::new();
        for op in ops {
            let key = op.key();
            let earlier = touched.get(key).copied();
            let mut headers = HeaderMap::new();
            if let Some((revision, create)) = condition(op, earlier, &create_base)? {
                expect_revision(&mut headers, revision);
                checks.push(Check { key, revision, create });
            }
            let payload = match op {
                Op::Put { value, options, .. } => {
                    self.ttl_headers(key, &mut headers, options.ttl, true)?;
                    value.clone().into_bytes()
                }
                Op::Remove { .. } => {
                    headers.insert(KV_OPERATION, "DEL");
                    Bytes::new()
                }
            };
            touched.insert(key, matches!(op, Op::Put { .. }));
            messages.push((self.subject(&nats_key(key)?), headers, payload));
        }
        Ok(Batch { messages, checks })
    }

    /// Sends `batch` as one atomic batch; only its commit is acknowledged.
    pub(crate) async fn commit<'a>(&self, ops: &'a [Op], batch: Batch<'a>) -> Result<(), Refused<'a>> {
        let batch_id = self.inner.client.new_inbox();
        let batch_id = batch_id.rsplit('.').next().unwrap_or("batch").to_owned();
        let count = batch.messages.len();
        let first_key = ops.first().map(Op::key).unwrap_or_default();
        for (i, (subject, mut headers, payload)) in batch.messages.into_iter().enumerate() {
            headers.insert(async_nats::header::NATS_BATCH_ID, batch_id.as_str());
            headers.insert(async_nats::header::NATS_BATCH_SEQUENCE, HeaderValue::from(i as u64 + 1));
            if i + 1 < count {
                // The others go out in order on the same connection.
                self.inner
                    .client
                    .publish_with_headers(subject, headers, payload)
                    .await
                    .map_err(|e| Refused::Error(error::wrap("transaction", Some(first_key), e)))?;
                continue;
            }
            headers
                .insert(async_nats::header::NATS_BATCH_COMMIT, async_nats::header::NATS_BATCH_COMMIT_FINAL);
            let result =
                async { self.inner.js.publish_with_headers(subject, headers, payload).await?.await }.await;
            return match result {
                Ok(_) => Ok(()),
                Err(e) if error::is_unchecked(&e) => Err(Refused::Unchecked(e)),
                Err(e) if error::is_wrong_revision(&e) => {
                    Err(self.refused(&batch.checks, first_key, e).await)
                }
                Err(e) => Err(Refused::Error(match error::kind_of(&e) {
                    ErrorKind::Unsupported => {
                        Error::unsupported("the bucket does not allow atomic batch publish").with_source(e)
                    }
                    _ => publish_error(first_key, "transaction", e),
                })),
            };
        }
        Ok(())
    }

    /// Which condition failed, read back key by key (revisions only grow,
    /// so a key no longer at its expected revision is one that failed).
    async fn refused<'a>(&self, checks: &[Check<'a>], first_key: &'a str, e: PublishError) -> Refused<'a> {
        let mut lost = None;
        for check in checks {
            let Ok(current) = self.current(check.key, &key::encode(check.key)).await else {
                continue;
            };
            if current.revision() == check.revision {
                continue;
            }
            match (check.create, current.is_live()) {
                (true, true) => {
                    return Refused::Error(Error::already_exists(check.key).with_source(e));
                }
                (true, _) => lost = lost.or(Some(check.key)),
                (false, _) => {
                    return Refused::Error(Error::etag_mismatch(check.key).with_source(e));
                }
            }
        }
        if let Some(key) = lost {
            return Refused::CreateLost(key);
        }
        let key = checks.first().map_or(first_key, |c| c.key);
        Refused::Error(Error::etag_mismatch(key).with_source(e))
    }
}
