//! Listing and watching by key prefix. The server filters on the whole
//! leading tokens of the prefix's mapped form ([`key::filter_tokens`]); the
//! rest of the prefix is checked here, and keys this store never writes are
//! skipped.
//!
//! A listing reads the last message of every subject under the filter, with
//! an end the server states, never one guessed from silence. An ephemeral
//! pull consumer (`LastPerSubject`, headers only, no acks) is asked for
//! batches with `no_wait`: the server sends what it has, then `404 No
//! Messages` or `408 Request Timeout` when it has nothing more. A batch
//! filled to the brim is followed by another request. The listing is over
//! when a request ends with one of those statuses, or when a message says
//! nothing is pending after it. Silence longer than the request timeout is a
//! `Timeout` error: a listing never returns part of the keys as if it were
//! all of them.
//!
//! A watch is an ordered push consumer delivering new messages only.

use std::time::{Duration, SystemTime};

use async_nats::{
    Client, HeaderMap,
    jetstream::{
        self,
        consumer::{AckPolicy, DeliverPolicy, ReplayPolicy, pull, push, push::OrderedErrorKind},
    },
};
use bytes::Bytes;
use futures_util::StreamExt;
use purista_core::{Error, ErrorKind, Result, WatchEvent, WatchStream};

use crate::{
    NatsStateStore,
    bucket::JS_API,
    entry::{Current, watch_kind},
    error, key,
};

/// Messages asked for per request.
const BATCH: usize = 1000;
/// How long the server keeps a consumer whose listing was abandoned.
const INACTIVE: Duration = Duration::from_secs(30);

/// `Backend::list_keys`: the keys under `prefix` whose last message is a value.
pub(crate) async fn list_keys(store: &NatsStateStore, prefix: &str) -> Result<Vec<String>> {
    let (filter, encoded) = store.prefix_filter(prefix);
    let i = &store.inner;
    let timeout = i.request_timeout();
    let lasts = last_per_subject(&i.js, &i.client, &i.kv.stream, filter, timeout).await?;
    Ok(lasts
        .into_iter()
        .filter(|m| Current::of(&m.headers, m.published, m.sequence, Bytes::new()).is_live())
        .filter_map(|m| store.store_key(&m.subject, &encoded))
        .collect())
}

/// `Backend::watch`: every change under `prefix` from now on, in stream order.
pub(crate) async fn watch(store: &NatsStateStore, prefix: &str) -> Result<WatchStream> {
    let (messages, encoded) = store.watch_consumer(prefix).await?;
    let store = store.clone();
    let events = messages.filter_map(move |message| {
        let out = match message {
            // The ordered consumer recreates itself after these, from the
            // last revision it delivered: nothing is lost, nothing to report.
            Err(e)
                if matches!(
                    e.kind(),
                    OrderedErrorKind::MissingHeartbeat | OrderedErrorKind::ConsumerDeleted
                ) =>
            {
                tracing::debug!("watch consumer recovering: {e}");
                None
            }
            Err(e) => Some(Err(error::wrap("watch", None, e))),
            Ok(message) => {
                let headers = message.headers.clone().unwrap_or_default();
                store.store_key(message.subject.as_str(), &encoded).map(|key| {
                    let revision = message.info().ok().map(|i| i.stream_sequence);
                    let kind = watch_kind(&headers, message.payload.clone(), revision);
                    Ok(WatchEvent { key, kind })
                })
            }
        };
        std::future::ready(out)
    });
    Ok(Box::pin(events))
}

impl NatsStateStore {
    /// The subject filter for the keys that may start with `prefix`, and the
    /// prefix's mapped form, which those keys do start with.
    fn prefix_filter(&self, prefix: &str) -> (String, String) {
        let encoded = key::encode_prefix(prefix);
        (format!("{}{}", self.inner.read_prefix, key::filter_tokens(&encoded)), encoded)
    }

    /// An ordered consumer on the changes to keys that may start with `prefix`.
    async fn watch_consumer(&self, prefix: &str) -> Result<(push::Ordered, String)> {
        let (filter, encoded) = self.prefix_filter(prefix);
        let consumer = self
            .inner
            .kv
            .stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: self.inner.client.new_inbox(),
                description: Some("purista state store".to_owned()),
                filter_subject: filter,
                replay_policy: ReplayPolicy::Instant,
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            })
            .await
            .map_err(|e| error::wrap("consumer creation", None, e))?;
        let messages =
            consumer.messages().await.map_err(|e| error::wrap("consumer subscription", None, e))?;
        Ok((messages, encoded))
    }

    /// The store key of a message's subject, if it is under `encoded_prefix`
    /// and a key this store could have written.
    fn store_key(&self, subject: &str, encoded_prefix: &str) -> Option<String> {
        let nats_key = subject.strip_prefix(&self.inner.read_prefix)?;
        if !nats_key.starts_with(encoded_prefix) {
            return None;
        }
        let key = key::decode(nats_key);
        if key.is_none() {
            tracing::debug!(nats_key, "skipping a key this store did not write");
        }
        key
    }
}

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
