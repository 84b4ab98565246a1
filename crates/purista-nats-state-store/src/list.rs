//! Listing: the last message of every subject under a filter, with an end
//! the server states, never one guessed from silence.
//!
//! An ephemeral pull consumer (`LastPerSubject`, headers only, no acks)
//! is asked for batches with `no_wait`: the server sends what it has, then
//! `404 No Messages` or `408 Request Timeout` when it has nothing more. A
//! batch filled to the brim is followed by another request. The listing is
//! over when a request ends with one of those statuses, or when a message
//! says nothing is pending after it. Silence longer than the request timeout
//! is a `Timeout` error: a listing never returns part of the keys as if it
//! were all of them.

use std::time::{Duration, SystemTime};

use async_nats::{
    Client, HeaderMap,
    jetstream::{
        self,
        consumer::{AckPolicy, DeliverPolicy, pull},
    },
};
use futures_util::StreamExt;
use purista_core::{Error, ErrorKind, Result};

use crate::{bucket::JS_API, error};

/// Messages asked for per request.
const BATCH: usize = 1000;
/// How long the server keeps a consumer whose listing was abandoned.
const INACTIVE: Duration = Duration::from_secs(30);

/// The last message of one subject.
pub(crate) struct Last {
    pub subject: String,
    pub headers: HeaderMap,
    pub published: SystemTime,
    pub sequence: u64,
}

/// The last message of every subject matching `filter`. Each wait for the
/// server is bounded by `timeout`.
pub(crate) async fn last_per_subject(
    js: &jetstream::Context,
    client: &Client,
    stream: &jetstream::stream::Stream,
    filter: String,
    timeout: Duration,
) -> Result<Vec<Last>> {
    let consumer = stream
        .create_consumer(pull::Config {
            description: Some("purista state store listing".to_owned()),
            deliver_policy: DeliverPolicy::LastPerSubject,
            ack_policy: AckPolicy::None,
            filter_subject: filter,
            headers_only: true,
            memory_storage: true,
            inactive_threshold: INACTIVE,
            ..Default::default()
        })
        .await
        .map_err(|e| error::wrap("listing consumer creation", None, e))?;
    let info = consumer.cached_info();
    let (name, pending) = (info.name.clone(), info.num_pending);
    let result = if pending == 0 {
        Ok(Vec::new())
    } else {
        let api = format!("{JS_API}.CONSUMER.MSG.NEXT.{}.{name}", info.stream_name);
        fetch_all(js, client, &api, timeout).await
    };
    // The server drops it after `INACTIVE` anyway; this is only tidiness.
    if let Err(e) = stream.delete_consumer(&name).await {
        tracing::debug!("listing consumer not deleted: {e}");
    }
    result
}

async fn fetch_all(
    js: &jetstream::Context,
    client: &Client,
    api: &str,
    timeout: Duration,
) -> Result<Vec<Last>> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.map_err(|e| error::wrap("listing", None, e))?;
    let request = format!(r#"{{"batch":{BATCH},"no_wait":true}}"#);
    let mut found = Vec::new();
    loop {
        client
            .publish_with_reply(api.to_owned(), inbox.clone(), request.clone().into())
            .await
            .map_err(|e| error::wrap("listing", None, e))?;
        let mut delivered = 0;
        loop {
            let message = match tokio::time::timeout(timeout, replies.next()).await {
                Err(_) => {
                    let msg = format!(
                        "NATS listing timed out: no answer for {timeout:?} after {} keys (not all of them)",
                        found.len()
                    );
                    return Err(Error::new(ErrorKind::Timeout, msg));
                }
                Ok(None) => {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        "NATS connection closed during a listing",
                    ));
                }
                Ok(Some(message)) => message,
            };
            if let Some(status) = message.status {
                return match status.as_u16() {
                    // Nothing more right now: the listing is whole.
                    404 | 408 => Ok(found),
                    code => {
                        let why = message.description.as_deref().unwrap_or("");
                        let kind = if code == 409 { ErrorKind::Unavailable } else { ErrorKind::Backend };
                        Err(Error::new(kind, format!("NATS listing interrupted: {code} {why}")))
                    }
                };
            }
            let message = jetstream::Message { message, context: js.clone() };
            let info = message.info().map_err(|e| {
                Error::new(ErrorKind::Backend, format!("NATS listing sent a message without metadata: {e}"))
            })?;
            let left = info.pending;
            found.push(Last {
                subject: message.subject.to_string(),
                headers: message.headers.clone().unwrap_or_default(),
                published: SystemTime::from(info.published),
                sequence: info.stream_sequence,
            });
            delivered += 1;
            if left == 0 {
                return Ok(found);
            }
            if delivered == BATCH {
                break;
            }
        }
    }
}
