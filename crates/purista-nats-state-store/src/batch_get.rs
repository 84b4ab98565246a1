//! Many keys in one request: JetStream's batched direct get (ADR-31,
//! nats-server 2.11+), which async-nats does not offer.
//!
//! The request goes to `$JS.API.DIRECT.GET.<stream>` with a reply inbox and
//! `{"multi_last":[<subject>, ...],"batch":<n>}`. Seen on nats-server 2.15:
//!
//! - one message per subject that has one, in stream order (not request
//!   order), each with the headers of a single direct get (`Nats-Stream`,
//!   `Nats-Subject`, `Nats-Sequence`, `Nats-Time-Stamp`, plus
//!   `Nats-Num-Pending`, `Nats-Last-Sequence`) and the message's own headers
//!   (`KV-Operation`, `Nats-TTL`, `Nats-Marker-Reason` ...). A subject without
//!   a message is simply left out; a subject asked twice is answered once;
//! - then `204 EOB` with `Nats-Num-Pending` (what was cut off: 0 for a whole
//!   answer), `Nats-Last-Sequence` and `Nats-UpTo-Sequence`;
//! - or only `404 No Results` when none of the subjects has a message;
//! - `413 Too Many Results` (and nothing else) when more than 1024 messages
//!   would match, whatever `batch` says;
//! - an answer is cut after `max_bytes`, by default the server's
//!   `max_pending` (64 MiB), at least one message: 100 values of 1 MB gave
//!   68 messages and an EOB with `Nats-Num-Pending: 32`;
//! - `408` for a malformed or empty request; `503` (no responders) when the
//!   stream is gone or does not allow direct gets.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use async_nats::{
    Client,
    jetstream::{kv, message::StreamMessage},
};
use futures_util::StreamExt;
use purista_core::{Error, ErrorKind, Result};

use crate::{
    bucket::{JS_API, version},
    error,
    reads::NATS_STREAM,
};

/// The most messages one answer may hold (nats-server's `maxAllowedResponses`):
/// each of our subjects is literal, so it matches at most one.
pub(crate) const MAX_SUBJECTS: usize = 1024;
/// Bytes of the request body besides the subjects: `{"multi_last":[`, `],"batch":1024}`.
const BODY_OVERHEAD: usize = 32;

/// Where batched direct gets for `bucket` go, if the server (2.11+) and the
/// bucket's stream (direct gets allowed) take them; `None`: key by key.
pub(crate) fn api_subject(client: &Client, bucket: &kv::Store) -> Option<String> {
    let allow_direct = bucket.stream.cached_info().config.allow_direct;
    (allow_direct && version(&client.server_info().version) >= (2, 11))
        .then(|| format!("{JS_API}.DIRECT.GET.{}", bucket.stream_name))
}

/// The last message of each of `subjects` that has one, by subject.
///
/// The distinct subjects go out in as few requests as the server takes (at
/// most [`MAX_SUBJECTS`] and `max_payload` bytes each), one after the other;
/// an answer the server cut at its byte limit is completed by asking again
/// for the subjects it did not answer. Each request waits at most `timeout`.
///
/// `accept` says which answers count; one that does not gives `None` (the
/// caller asks again, or asks the stream leader).
pub(crate) async fn last_messages(
    client: &Client,
    api_subject: &str,
    subjects: &[String],
    timeout: Duration,
    accept: &Accept<'_>,
) -> Result<Option<HashMap<String, StreamMessage>>> {
    // Each subject asked once, however often it was given.
    let mut wanted: HashSet<&str> = HashSet::with_capacity(subjects.len());
    let distinct: Vec<&str> = subjects.iter().map(String::as_str).filter(|s| wanted.insert(s)).collect();
    let mut found = HashMap::with_capacity(distinct.len());
    // Room for the fence subject in every request.
    let fence = accept.after.map(|(_, subject)| subject);
    let (count, max_payload) = match fence {
        Some(f) => (MAX_SUBJECTS - 1, client.server_info().max_payload.saturating_sub(f.len() + 3)),
        None => (MAX_SUBJECTS, client.server_info().max_payload),
    };
    for mut todo in chunks(&distinct, count, max_payload) {
        loop {
            let mut asked = todo.clone();
            if let Some(f) = fence.filter(|f| !wanted.contains(f)) {
                asked.push(f);
            }
            let answer = ask(client, api_subject, &asked, timeout, &wanted, &mut found).await?;
            let before = todo.len();
            if !answer.whole {
                todo.retain(|s| !found.contains_key(*s));
                // Guards the loop: a cut answer holds at least one message.
                if todo.len() == before {
                    return Err(Error::new(
                        ErrorKind::Backend,
                        "NATS batched get: the server cut its answer without answering anything",
                    ));
                }
            }
            if !accept.accepts(&answer) {
                return Ok(None);
            }
            if answer.whole || todo.is_empty() {
                break;
            }
        }
    }
    Ok(Some(found))
}

/// Which answers count.
///
/// One request is answered by one responder (a replica of the stream, or a
/// mirror in its direct-get queue group), from one state of its copy.
#[derive(Debug, Default)]
pub(crate) struct Accept<'a> {
    /// Only answers of this stream (`Nats-Stream` of a message): an answer
    /// without any message (a `404`, which names no stream) does not count.
    pub stream: Option<&'a str>,
    /// Only answers from a copy at or past this sequence, as the end of the
    /// answer says (`Nats-UpTo-Sequence`: the responder's last sequence). The
    /// subject has a message at that sequence and is asked too, so that a
    /// copy that is far enough along always answers with a message.
    pub after: Option<(u64, &'a str)>,
}

impl Accept<'_> {
    fn accepts(&self, answer: &Answer) -> bool {
        self.stream.is_none_or(|own| answer.stream.as_deref() == Some(own))
            && self.after.is_none_or(|(seq, _)| answer.up_to.is_some_and(|up_to| up_to >= seq))
    }
}

/// What one request brought besides the messages.
struct Answer {
    /// Nothing left out: no more to ask for.
    whole: bool,
    /// The stream that answered (`Nats-Stream` of a message), if any did.
    stream: Option<String>,
    /// The responder's last sequence when it answered (`Nats-UpTo-Sequence`).
    up_to: Option<u64>,
}

/// Splits `subjects` into requests the server takes. Subjects are built
/// from a bucket name and encoded keys, so none needs escaping in JSON: each
/// costs its length, two quotes and a comma.
fn chunks<'a>(subjects: &[&'a str], max_count: usize, max_payload: usize) -> Vec<Vec<&'a str>> {
    let room = max_payload.saturating_sub(BODY_OVERHEAD);
    let mut out = Vec::new();
    let mut chunk: Vec<&str> = Vec::new();
    let mut bytes = 0;
    for s in subjects {
        let cost = s.len() + 3;
        if !chunk.is_empty() && (chunk.len() == max_count || bytes + cost > room) {
            out.push(std::mem::take(&mut chunk));
            bytes = 0;
        }
        chunk.push(s);
        bytes += cost;
    }
    if !chunk.is_empty() {
        out.push(chunk);
    }
    out
}

/// `{"multi_last":[...],"batch":n}`. `batch` asks for the batch form (EOB at
/// the end) on every 2.11+ server; one literal subject matches at most one
/// message, so it never cuts.
fn body(subjects: &[&str]) -> Vec<u8> {
    let list = serde_json::Value::from(subjects.to_vec());
    format!(r#"{{"multi_last":{list},"batch":{}}}"#, subjects.len()).into_bytes()
}

/// One request: adds what it answers to `found`; returns whether the answer
/// was whole, and who gave it.
async fn ask(
    client: &Client,
    api_subject: &str,
    subjects: &[&str],
    timeout: Duration,
    wanted: &HashSet<&str>,
    found: &mut HashMap<String, StreamMessage>,
) -> Result<Answer> {
    // An inbox per request: a late message of an abandoned answer cannot be
    // taken for part of the next one.
    let inbox = client.new_inbox();
    let mut answers =
        client.subscribe(inbox.clone()).await.map_err(|e| error::wrap("batched get", None, e))?;
    client
        .publish_with_reply(api_subject.to_owned(), inbox, body(subjects).into())
        .await
        .map_err(|e| error::wrap("batched get", None, e))?;
    // The whole answer within the timeout: a server that stops half way (or
    // a connection that is down and reconnecting) gives Timeout, not a hang.
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delivered = 0;
    let mut stream = None;
    loop {
        let message = match tokio::time::timeout_at(deadline, answers.next()).await {
            Err(_) => {
                let msg = format!(
                    "NATS batched get timed out after {timeout:?} ({delivered} of up to {} answers)",
                    subjects.len()
                );
                return Err(Error::new(ErrorKind::Timeout, msg));
            }
            Ok(None) => {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    "NATS connection closed during a batched get",
                ));
            }
            Ok(Some(message)) => message,
        };
        let Some(status) = message.status else {
            let message = StreamMessage::try_from(message).map_err(|e| {
                Error::new(
                    ErrorKind::Backend,
                    "NATS batched get: an answer with missing or unreadable stream headers",
                )
                .with_source(e)
            })?;
            if stream.is_none() {
                stream = message.headers.get(NATS_STREAM).map(|v| v.as_str().to_owned());
            }
            // Anything we did not ask for is ignored, not trusted.
            if wanted.contains(message.subject.as_str()) {
                found.insert(message.subject.to_string(), message);
                delivered += 1;
            }
            continue;
        };
        let description = message.description.as_deref().unwrap_or("");
        return match status.as_u16() {
            204 => {
                let number = |name: &str| {
                    message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(name))
                        .and_then(|v| v.as_str().parse::<u64>().ok())
                };
                let up_to = number("Nats-UpTo-Sequence");
                let pending = number("Nats-Num-Pending").ok_or_else(|| {
                    Error::new(ErrorKind::Backend, "NATS batched get: end of batch without Nats-Num-Pending")
                })?;
                Ok(Answer { whole: pending == 0, stream, up_to })
            }
            // Alone: none of the subjects has a message. After messages (a
            // message gone between listing and sending): ask for the rest again.
            404 => Ok(Answer { whole: delivered == 0, stream, up_to: None }),
            503 => Err(Error::new(
                ErrorKind::Unavailable,
                "NATS batched get: no responders (the bucket's stream is gone or no longer allows direct gets)",
            )),
            code => {
                Err(Error::new(ErrorKind::Backend, format!("NATS batched get refused: {code} {description}")))
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_body() {
        assert_eq!(
            body(&["$KV.b.a", "$KV.b.x=3Ay"]),
            br#"{"multi_last":["$KV.b.a","$KV.b.x=3Ay"],"batch":2}"#
        );
    }

    #[test]
    fn chunks_respect_count_and_bytes() {
        let names: Vec<String> = (0..2500).map(|i| format!("$KV.b.k{i}")).collect();
        let subjects: Vec<&str> = names.iter().map(String::as_str).collect();
        let split = chunks(&subjects, MAX_SUBJECTS, 1 << 20);
        assert_eq!(split.iter().map(Vec::len).collect::<Vec<_>>(), vec![1024, 1024, 452]);
        assert_eq!(split.concat(), subjects);

        let long: Vec<String> = (0..10).map(|i| format!("$KV.b.{i}{}", "x".repeat(3000))).collect();
        let subjects: Vec<&str> = long.iter().map(String::as_str).collect();
        for chunk in chunks(&subjects, MAX_SUBJECTS, 8000) {
            assert!(body(&chunk).len() <= 8000, "{}", body(&chunk).len());
            assert_eq!(chunk.len(), 2);
        }
        // A subject larger than the limit still goes out (and fails there, typed).
        assert_eq!(chunks(&subjects, MAX_SUBJECTS, 100).len(), 10);
        assert!(chunks(&[], MAX_SUBJECTS, 100).is_empty());
        assert_eq!(chunks(&subjects, 3, 1 << 20).iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
    }
}
