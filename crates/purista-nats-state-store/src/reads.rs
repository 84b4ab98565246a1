//! How a read reaches the bucket's stream, chosen at connect so that reads
//! are linearizable unless the caller opted out.
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

use async_nats::jetstream::{
    message::StreamMessage,
    stream::{self, DirectGetErrorKind, LastRawMessageErrorKind, Stream},
};
use purista_core::{Error, ErrorKind, Result};

use crate::error;

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
