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
//! A watch is an ordered push consumer delivering new messages only, and
//! says at once when the connection is lost, and within
//! `Capabilities::watch_stall` when the server goes silent or the consumer
//! falls behind what the stream's leader has.

use std::{
    pin::Pin,
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant, SystemTime},
};

use async_nats::{
    Client, HeaderMap,
    connection::State,
    jetstream::{
        self,
        consumer::{
            AckPolicy, DeliverPolicy, ReplayPolicy, pull, push,
            push::{OrderedError, OrderedErrorKind},
        },
        stream::RawMessageErrorKind,
    },
};
use bytes::Bytes;
use futures_util::StreamExt;
use purista_core::{Error, ErrorKind, Result, WatchEvent, WatchStream};
use tokio::time::{Interval, MissedTickBehavior};

use crate::{
    NatsStateStore,
    bucket::JS_API,
    entry::{Current, change_kind, watch_kind},
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

/// How often a watch looks at the connection: async-nats announces a
/// disconnection only to the client's event callback, which belongs to
/// whoever built the client.
const CONNECTION_CHECK: Duration = Duration::from_millis(100);

/// How often a watch asks the bucket's stream leader for the first change
/// under its filter after the last one it delivered, and how long it waits
/// for the answer. Two failures are silent otherwise, while the stream goes
/// on taking writes through other nodes: a frozen node (or one cut off
/// without a reset) closes no connection and sends nothing; and a killed
/// node that hosted the watch's consumer (an ephemeral consumer has one
/// replica) leaves the client's own connection up. async-nats's ordered
/// consumer notices either only after two missed idle heartbeats, 10 s.
const PROBE_EVERY: Duration = Duration::from_millis(250);
const PROBE_PATIENCE: Duration = Duration::from_secs(1);
/// How long a change the leader has may stay undelivered.
const GAP_PATIENCE: Duration = Duration::from_secs(1);
/// A caller that takes longer than this to ask for the next event was not
/// reading: what the probes saw meanwhile is dropped. The checks run while
/// the watch is read (a near cache reads its feed all the time).
const AWAY: Duration = PROBE_EVERY;
/// `Capabilities::watch_stall`: a probe's period, its wait or the gap's
/// patience, a check's period, and room for a busy machine to schedule the
/// report.
pub(crate) const STALL_REPORTED: Duration = Duration::from_secs(2);

/// What a probe heard.
enum Heard {
    /// No answer within `PROBE_PATIENCE`.
    Silence,
    /// The stream sequence of the first change under the filter after the
    /// one asked from, if the leader has one (or answered with an error,
    /// which is an answer all the same).
    Next(Option<u64>),
}

/// A probe in flight.
type Probe = Pin<Box<dyn Future<Output = Heard> + Send>>;

/// `Backend::watch`: every change under `prefix` from now on, in stream
/// order, and an error as soon as the connection is lost. `names_only`
/// (`invalidations`): the server sends each message's headers without its
/// value (`headers_only`), and a write is reported as `Changed`.
pub(crate) async fn watch(store: &NatsStateStore, prefix: &str, names_only: bool) -> Result<WatchStream> {
    let (filter, encoded) = store.prefix_filter(prefix);
    let (messages, last) = store.watch_consumer(&filter, DeliverPolicy::New, names_only).await?;
    let mut check = tokio::time::interval(CONNECTION_CHECK);
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let client = &store.inner.client;
    let watcher = Watcher {
        store: store.clone(),
        messages,
        filter,
        encoded,
        names_only,
        check,
        connected: client.connection_state() == State::Connected,
        connects: client.statistics().connects.load(Relaxed),
        last,
        resume: false,
        stalled: false,
        probe: None,
        probed: Instant::now(),
        behind: None,
        returned: Instant::now(),
    };
    Ok(Box::pin(futures_util::stream::unfold(watcher, |mut w| async move {
        let next = w.next().await?;
        Some((next, w))
    })))
}

/// One `watch` stream.
struct Watcher {
    store: NatsStateStore,
    messages: push::Ordered,
    filter: String,
    encoded: String,
    /// Values are not asked for (`invalidations`).
    names_only: bool,
    check: Interval,
    /// The connection was up at the last check.
    connected: bool,
    /// The client's connections so far, at the last check.
    connects: u64,
    /// The stream sequence of the last message seen (at first: the
    /// stream's last when the watch began).
    last: u64,
    /// The consumer is to be replaced (after a reconnection or a stall).
    resume: bool,
    /// A stall was reported and the consumer not replaced since.
    stalled: bool,
    probe: Option<Probe>,
    /// When the last probe was sent.
    probed: Instant,
    /// A change the leader has and the consumer had not delivered: its
    /// stream sequence, and when a probe first found it.
    behind: Option<(u64, Instant)>,
    /// When the last event or error was handed to the caller.
    returned: Instant,
}

/// The answer of the probe in flight; never, while there is none.
async fn answer(probe: &mut Option<Probe>) -> Heard {
    match probe {
        Some(probe) => probe.await,
        None => std::future::pending().await,
    }
}

impl Watcher {
    /// The next event or error; `None` once the consumer's subscription ends.
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        // A caller that stopped reading for a while left the consumer's
        // messages unread and a probe's wait running: neither says anything
        // about the server. The checks start afresh.
        if self.returned.elapsed() > AWAY {
            (self.probe, self.behind) = (None, None);
        }
        let next = self.follow().await;
        self.returned = Instant::now();
        next
    }

    async fn follow(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            // Both are cancel-safe: the ordered consumer keeps its state
            // between polls.
            tokio::select! {
                message = self.messages.next() => {
                    if let Some(out) = self.event(message?) {
                        return Some(out);
                    }
                }
                heard = answer(&mut self.probe) => {
                    self.probe = None;
                    match heard {
                        // A lost connection is the connection check's to
                        // report (once per outage). Otherwise the consumer
                        // is replaced once the server answers again.
                        Heard::Silence => {
                            let up = self.connected
                                && self.store.inner.client.connection_state() == State::Connected;
                            if up && let Some(stall) = self.stall("the NATS server did not answer within", PROBE_PATIENCE) {
                                return Some(Err(stall));
                            }
                        }
                        Heard::Next(Some(next)) if next > self.last => {
                            self.behind.get_or_insert((next, Instant::now()));
                        }
                        Heard::Next(_) => self.behind = None,
                    }
                }
                _ = self.check.tick() => {
                    self.send_probe();
                    // Reported before the consumer is replaced: while the
                    // cluster elects new leaders that may wait for the
                    // request timeout, and the caller must know at once.
                    if let Some(lost) = self.connection_lost() {
                        return Some(Err(lost));
                    }
                    if let Some(gap) = self.gap() {
                        return Some(Err(gap));
                    }
                    if self.resume && self.connected {
                        self.resume_consumer().await;
                    }
                }
            }
        }
    }

    /// Asks the bucket's stream leader (through the node the client is
    /// connected to) for the first change under the filter after the last
    /// one delivered, at most every `PROBE_EVERY`.
    fn send_probe(&mut self) {
        if self.probe.is_some() || !self.connected || self.probed.elapsed() < PROBE_EVERY {
            return;
        }
        self.probed = Instant::now();
        let request = self
            .store
            .inner
            .kv
            .stream
            .raw_message_builder()
            .sequence(self.last + 1)
            .next_by_subject(self.filter.clone());
        self.probe = Some(Box::pin(async move {
            match tokio::time::timeout(PROBE_PATIENCE, request.send()).await {
                Ok(Ok(message)) => Heard::Next(Some(message.sequence)),
                // `Other`: the request itself failed (timed out, no
                // responders). Any other error (nothing found, a refused
                // permission, a stream gone) is an answer: the server is
                // not silent.
                Ok(Err(e)) if e.kind() == RawMessageErrorKind::Other => Heard::Silence,
                Ok(Err(_)) => Heard::Next(None),
                Err(_) => Heard::Silence,
            }
        }));
    }

    /// A change the leader has had for `GAP_PATIENCE` that the consumer
    /// has not delivered: whatever stopped it, the consumer is replaced.
    fn gap(&mut self) -> Option<Error> {
        let (next, since) = self.behind?;
        if self.last >= next {
            self.behind = None;
            return None;
        }
        if since.elapsed() < GAP_PATIENCE {
            return None;
        }
        self.behind = None;
        self.stall("the watch's consumer did not deliver a change the stream's leader had for", GAP_PATIENCE)
    }

    /// The first report of a stall since the consumer was last replaced
    /// (`None` after that), and the consumer to be replaced.
    fn stall(&mut self, what: &str, patience: Duration) -> Option<Error> {
        self.resume = true;
        let first = !std::mem::replace(&mut self.stalled, true);
        first.then(|| Error::watch_interrupted(format!("{what} {patience:?}")))
    }

    /// The ordered consumer waits out an outage silently (and misses one
    /// shorter than a check: then it stalls until two idle heartbeats, 10
    /// s, are missed), while other clients' writes go unseen and a server
    /// that lost its data replays nothing: an error once per outage, as soon
    /// as it is noticed. The client's connect count catches an outage that
    /// fell between two checks.
    fn connection_lost(&mut self) -> Option<Error> {
        let client = &self.store.inner.client;
        let state = client.connection_state();
        let connects = client.statistics().connects.load(Relaxed);
        let reconnected = std::mem::replace(&mut self.connects, connects) != connects;
        self.resume |= reconnected;
        let was = std::mem::replace(&mut self.connected, state == State::Connected);
        (was && (!self.connected || reconnected)).then(|| {
            Error::watch_interrupted(format!("the connection to NATS was lost (the client is {state} now)"))
        })
    }

    /// Replaces the consumer after a reconnection or a stall by one that
    /// starts right after the last message seen: events flow at once, none is skipped,
    /// and a watch that had seen nothing does not get the whole history (the
    /// ordered consumer restarts from the start then). Tried again at the
    /// next check if the server cannot create it yet.
    async fn resume_consumer(&mut self) {
        let from = DeliverPolicy::ByStartSequence { start_sequence: self.last + 1 };
        match self.store.watch_consumer(&self.filter, from, self.names_only).await {
            Ok((messages, _)) => {
                self.messages = messages;
                (self.resume, self.stalled, self.behind) = (false, false, None);
            }
            Err(e) => tracing::debug!("watch consumer not resumed yet: {e}"),
        }
    }

    fn event(&mut self, message: Result<jetstream::Message, OrderedError>) -> Option<Result<WatchEvent>> {
        let message = match message {
            Ok(message) => message,
            // The server (frozen, or cut off without the client noticing
            // yet) sent nothing for two heartbeat intervals: whatever it
            // applied meanwhile was not seen.
            Err(e) if e.kind() == OrderedErrorKind::MissingHeartbeat => {
                let stall = self.stall("the NATS server sent no heartbeat for", Duration::from_secs(10));
                return stall.map(|stall| Err(stall.with_source(e)));
            }
            // Removed on the server; the replacement starts after the last
            // message seen, so nothing is missed.
            Err(e) if e.kind() == OrderedErrorKind::ConsumerDeleted => {
                tracing::debug!("watch consumer recovering: {e}");
                self.resume = true;
                return None;
            }
            Err(e) => return Some(Err(error::wrap("watch", None, e))),
        };
        let revision = message.info().ok().map(|i| i.stream_sequence);
        self.last = revision.unwrap_or(self.last).max(self.last);
        let headers = message.headers.clone().unwrap_or_default();
        self.store.store_key(message.subject.as_str(), &self.encoded).map(|key| {
            let kind = match self.names_only {
                true => change_kind(&headers),
                false => watch_kind(&headers, message.payload.clone(), revision),
            };
            Ok(WatchEvent { key, kind })
        })
    }
}

impl NatsStateStore {
    /// The subject filter for the keys that may start with `prefix`, and the
    /// prefix's mapped form, which those keys do start with.
    fn prefix_filter(&self, prefix: &str) -> (String, String) {
        let encoded = key::encode_prefix(prefix);
        (format!("{}{}", self.inner.read_prefix, key::filter_tokens(&encoded)), encoded)
    }

    /// An ordered consumer on the changes under `filter` from `from`, and
    /// the stream sequence it starts after.
    async fn watch_consumer(
        &self,
        filter: &str,
        from: DeliverPolicy,
        headers_only: bool,
    ) -> Result<(push::Ordered, u64)> {
        let consumer = self
            .inner
            .kv
            .stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: self.inner.client.new_inbox(),
                description: Some("purista state store".to_owned()),
                filter_subject: filter.to_owned(),
                replay_policy: ReplayPolicy::Instant,
                deliver_policy: from,
                headers_only,
                ..Default::default()
            })
            .await
            .map_err(|e| error::wrap("consumer creation", None, e))?;
        // For `New`: the stream's last sequence when the consumer was made.
        let last = consumer.cached_info().delivered.stream_sequence;
        let messages =
            consumer.messages().await.map_err(|e| error::wrap("consumer subscription", None, e))?;
        Ok((messages, last))
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
