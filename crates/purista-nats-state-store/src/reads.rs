//! Reads of one key and of many (`get_state`), and how they reach the
//! bucket's stream: a path chosen at connect so that reads are linearizable
//! unless the caller opted out.
//!
//! - [`ReadPath::Leader`]: `$JS.API.STREAM.MSG.GET.<stream>`, answered by the
//!   stream leader only (nats-server's `jsMsgGetRequest` drops the request on
//!   every other node, and a newly elected leader counts as leader only once
//!   it has applied its log). The leader acknowledges a write after storing
//!   it, so a read that starts after the acknowledgement sees the write. The
//!   default on a stream with more than one replica, where a direct get may
//!   be answered by a follower that has not applied the write yet. No
//!   batched form exists (the server refuses `batch` there), and one leader
//!   get per name would read each name at its own point in time; so
//!   `get_state` first asks the leader for the stream's last message (its
//!   sequence S is past every write acknowledged before the call), then
//!   sends the batched direct get, which any replica answers, and takes the
//!   answer only from a replica of the stream at or past S (the answer's
//!   `Nats-UpTo-Sequence`) with no message past S: then it is the stream at
//!   S for those names (a name keeps a last message once written; removals
//!   are markers). A message past S may be committed but not yet applied at
//!   the leader, and a later leader read would go back in time. Failing
//!   that, leader gets per name count on the same condition; a few attempts
//!   with a fresh S, then `Unavailable`.
//! - [`ReadPath::SingleReplica`]: direct gets on a one-replica stream. Its
//!   only replica is the leader, so its direct answers are as fresh as a
//!   leader get, without the JetStream API layer. But a mirror of the bucket
//!   with `mirror_direct` (async-nats and nats.go set it on every KV mirror)
//!   joins the stream's direct-get queue group once it is within 10 messages
//!   of the origin, and answers with what it has. So an answer counts only
//!   when its `Nats-Stream` header names the bucket's own stream; another
//!   stream's answer, and a miss (a `404` names no stream), are asked again
//!   at the leader.
//! - [`ReadPath::Replicas`]: direct gets, whoever answers (the opt-in
//!   [`replica_reads`](crate::NatsStateStoreBuilder::replica_reads)): reads
//!   spread over the replicas and mirrors, and may return a value older than
//!   one already acknowledged.

use std::{collections::HashMap, time::Duration};

use async_nats::jetstream::{
    message::StreamMessage,
    stream::{self, DirectGetErrorKind, LastRawMessageErrorKind, Stream},
};
use purista_core::{Error, ErrorKind, Json, Result};

use crate::{NatsStateStore, batch_get, entry::Current, error, key::nats_key};

/// How often `get_state` on a replicated bucket tries for an answer at one
/// point in time before it gives up.
const FENCED_ATTEMPTS: usize = 5;

/// The header naming the stream that answered a direct get.
pub(crate) const NATS_STREAM: &str = "Nats-Stream";

/// Where reads go; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadPath {
    /// `STREAM.MSG.GET`: the stream leader answers.
    Leader,
    /// Direct gets on a one-replica stream, checked against mirrors.
    SingleReplica,
    /// Direct gets, any replica or mirror answers (opt-in).
    Replicas,
}

impl ReadPath {
    /// The path for a bucket's stream: leader reads unless direct gets are
    /// allowed and either linearizable there (one replica) or asked for.
    pub(crate) fn choose(config: &stream::Config, replica_reads: bool) -> ReadPath {
        if !config.allow_direct {
            ReadPath::Leader
        } else if replica_reads {
            ReadPath::Replicas
        } else if config.num_replicas <= 1 {
            ReadPath::SingleReplica
        } else {
            ReadPath::Leader
        }
    }
}

/// Whether a direct get's answer came from `stream` itself (not a mirror).
pub(crate) fn answered_by(message: &StreamMessage, stream: &str) -> bool {
    message.headers.get(NATS_STREAM).is_some_and(|v| v.as_str() == stream)
}

/// The last message on `subject`, read as `path` says.
pub(crate) async fn last(
    stream: &Stream,
    path: ReadPath,
    key: &str,
    subject: String,
) -> Result<Option<StreamMessage>> {
    match path {
        ReadPath::Leader => leader_last(stream, Some(key), &subject).await,
        ReadPath::Replicas => direct_last(stream, key, subject).await,
        ReadPath::SingleReplica => {
            let own = &stream.cached_info().config.name;
            match direct_last(stream, key, subject.clone()).await? {
                Some(m) if answered_by(&m, own) => Ok(Some(m)),
                // A mirror answered, or no one had the key: only the stream
                // itself can say it has nothing newer.
                _ => leader_last(stream, Some(key), &subject).await,
            }
        }
    }
}

pub(crate) async fn direct_last(
    stream: &Stream,
    key: &str,
    subject: String,
) -> Result<Option<StreamMessage>> {
    match stream.direct_get_last_for_subject(subject).await {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == DirectGetErrorKind::TimedOut => {
            Err(Error::new(ErrorKind::Timeout, "NATS get timed out").with_key(key).with_source(e))
        }
        Err(e) => Err(error::wrap("get", Some(key), e)),
    }
}

/// The stream's last message as its leader has it now: its sequence and
/// subject (`None` for an empty stream). A `get_state` whose answer reflects
/// the stream at or past this sequence sees every write acknowledged before
/// it asked.
pub(crate) async fn fence(stream: &Stream, read_prefix: &str) -> Result<Option<(u64, String)>> {
    let last = leader_last(stream, None, &format!("{read_prefix}>")).await?;
    Ok(last.map(|m| (m.sequence, m.subject.to_string())))
}

/// The last message on `subject` as the stream leader has it (`key`, if
/// any, is named in errors).
pub(crate) async fn leader_last(
    stream: &Stream,
    key: Option<&str>,
    subject: &str,
) -> Result<Option<StreamMessage>> {
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(error::wrap("get", key, e)),
    }
}

/// `Backend::get_state`: batched direct gets where the server and the
/// bucket take them, else key by key.
pub(crate) async fn get_state(store: &NatsStateStore, keys: &[&str]) -> Result<Vec<Option<Json>>> {
    let Some(api_subject) = &store.inner.batch_get else {
        return store.read_each(store.inner.reads, keys).await;
    };
    let subjects = keys
        .iter()
        .map(|k| Ok(format!("{}{}", store.inner.read_prefix, nats_key(k)?)))
        .collect::<Result<Vec<String>>>()?;
    let last = match store.last_messages(api_subject, &subjects).await? {
        Some(last) => last,
        // A mirror answered, or nothing was found (a `404` names no stream,
        // so it may be a mirror's): ask again fenced by the leader's last
        // sequence, still one point in time. Key by key, values written
        // between the reads would tear the answer.
        None => store.fenced_last_messages(api_subject, &subjects).await?,
    };
    Ok(subjects
        .iter()
        // The same rule as key by key: markers are no value.
        .map(|s| Current::of_last(last.get(s)).into_value())
        .collect())
}

impl NatsStateStore {
    /// The state of `key` (mapped: `nats_key`) as the server has it.
    pub(crate) async fn current(&self, key: &str, nats_key: &str) -> Result<Current> {
        self.current_via(self.inner.reads, key, nats_key).await
    }

    async fn current_via(&self, path: ReadPath, key: &str, nats_key: &str) -> Result<Current> {
        let subject = format!("{}{nats_key}", self.inner.read_prefix);
        Ok(Current::of_last(last(&self.inner.kv.stream, path, key, subject).await?.as_ref()))
    }

    /// The last message of each of `subjects` through batched direct gets,
    /// at one point in time; `None` if no answer could be trusted.
    async fn last_messages(
        &self,
        api_subject: &str,
        subjects: &[String],
    ) -> Result<Option<HashMap<String, StreamMessage>>> {
        use batch_get::Accept;
        let i = &self.inner;
        let timeout = i.request_timeout();
        let own = Some(i.kv.stream_name.as_str());
        match i.reads {
            ReadPath::Replicas => {
                batch_get::last_messages(&i.client, api_subject, subjects, timeout, &Accept::default()).await
            }
            // The only replica is the leader; a mirror must not answer.
            ReadPath::SingleReplica => {
                let accept = Accept { stream: own, after: None };
                batch_get::last_messages(&i.client, api_subject, subjects, timeout, &accept).await
            }
            // Any replica may answer with the stream as the leader had it
            // after the call started (see above); else the leader, checked.
            ReadPath::Leader => self.fenced_last_messages(api_subject, subjects).await.map(Some),
        }
    }

    /// The last message of each of `subjects` at one point in time no
    /// earlier than the call: the leader's last sequence is read first, and
    /// only an answer from a copy at or past it counts.
    async fn fenced_last_messages(
        &self,
        api_subject: &str,
        subjects: &[String],
    ) -> Result<HashMap<String, StreamMessage>> {
        let i = &self.inner;
        let accept_own = Some(i.kv.stream_name.as_str());
        for attempt in 0..FENCED_ATTEMPTS {
            let Some((seq, subject)) = fence(&i.kv.stream, &i.read_prefix).await? else {
                // The leader holds nothing: no name has a value.
                return Ok(HashMap::new());
            };
            let accept = batch_get::Accept { stream: accept_own, after: Some((seq, subject.as_str())) };
            let answer =
                batch_get::last_messages(&i.client, api_subject, subjects, i.request_timeout(), &accept);
            if let Some(found) = answer.await? {
                // With replicas, a message past S may be committed but not
                // yet applied at the leader, whose reads would then go back
                // in time: such an answer counts once the leader has applied
                // its newest message N too. It is the asked names' state at
                // N, which the leader reached during the call (after S).
                // Under steady writes to the names this is what ends the
                // attempts; the only replica answers from one state anyway.
                let newest = found.values().map(|m| m.sequence).max().unwrap_or(0);
                if i.reads == ReadPath::SingleReplica || newest <= seq {
                    return Ok(found);
                }
                if fence(&i.kv.stream, &i.read_prefix).await?.is_some_and(|(applied, _)| applied >= newest) {
                    return Ok(found);
                }
            }
            if let Some(found) = self.leader_snapshot(subjects, seq).await? {
                return Ok(found);
            }
            tokio::time::sleep(Duration::from_millis(5 * (attempt as u64 + 1))).await;
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "NATS get_state: no answer at one point in time after {FENCED_ATTEMPTS} attempts \
                 (replicas behind the stream leader while the names kept changing)"
            ),
        ))
    }

    /// `subjects` read at the leader one by one, concurrently, if together
    /// they are the stream at `seq`: none has a message past it. (A subject
    /// keeps a last message once written; removals and purges are markers.)
    async fn leader_snapshot(
        &self,
        subjects: &[String],
        seq: u64,
    ) -> Result<Option<HashMap<String, StreamMessage>>> {
        let stream = &self.inner.kv.stream;
        let reads = subjects.iter().map(|s| async move {
            Ok::<_, Error>(leader_last(stream, None, s).await?.map(|m| (s.clone(), m)))
        });
        let found: HashMap<String, StreamMessage> =
            futures_util::future::try_join_all(reads).await?.into_iter().flatten().collect();
        Ok(found.values().all(|m| m.sequence <= seq).then_some(found))
    }

    /// `keys` read one by one over `path`, concurrently on the one connection
    /// (one round trip of latency).
    async fn read_each(&self, path: ReadPath, keys: &[&str]) -> Result<Vec<Option<Json>>> {
        let reads = keys
            .iter()
            .map(|k| async move { Ok(self.current_via(path, k, &nats_key(k)?).await?.into_value()) });
        futures_util::future::try_join_all(reads).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_reads_unless_one_replica_or_asked() {
        let config = |replicas: usize, allow_direct: bool| stream::Config {
            num_replicas: replicas,
            allow_direct,
            ..Default::default()
        };
        assert_eq!(ReadPath::choose(&config(1, true), false), ReadPath::SingleReplica);
        assert_eq!(ReadPath::choose(&config(3, true), false), ReadPath::Leader);
        assert_eq!(ReadPath::choose(&config(3, true), true), ReadPath::Replicas);
        assert_eq!(ReadPath::choose(&config(1, true), true), ReadPath::Replicas);
        assert_eq!(ReadPath::choose(&config(3, false), true), ReadPath::Leader);
        assert_eq!(ReadPath::choose(&config(1, false), false), ReadPath::Leader);
    }
}
