//! Writes: puts (upsert, update-if-revision, create-only over markers),
//! removes, and the headers that carry a write's TTL and condition.

use std::time::Duration;

use async_nats::{HeaderMap, HeaderValue, Subject, jetstream::context::PublishError};
use bytes::Bytes;
use purista_core::{ETag, Error, ErrorKind, Json, PutMode, PutOptions, Result};

use crate::{
    NatsStateStore, RemoveMode,
    entry::{Current, KV_OPERATION, etag, parse_etag},
    error::{contended, is_unchecked, publish_error},
    key::nats_key,
};

/// How often a conditional write refused unchecked (another write to the
/// key in flight on a clustered stream) is sent again.
const UNCHECKED_RESENDS: u64 = 8;
/// How often a remove re-reads a key that writers keep changing, before it
/// removes without a condition.
const REMOVE_ATTEMPTS: usize = 3;
/// How often a create-only write (or a transaction holding one) tries again
/// when the key is still absent but its delete marker was replaced by
/// another one meanwhile, before giving up with `Backend`.
pub(crate) const CREATE_ATTEMPTS: usize = 8;

/// `Backend::put`.
pub(crate) async fn put(
    store: &NatsStateStore,
    key: &str,
    value: Json,
    options: &PutOptions,
) -> Result<Option<ETag>> {
    let nats_key = nats_key(key)?;
    let payload = value.into_bytes();
    let mut headers = HeaderMap::new();
    store.ttl_headers(key, &mut headers, options.ttl, false)?;
    match &options.mode {
        PutMode::Upsert => {}
        PutMode::Update(etag) => expect_revision(&mut headers, parse_etag(key, etag)?),
        PutMode::Create => return store.create(key, &nats_key, headers, payload).await,
    }
    let revision = store.publish(key, &nats_key, headers, payload, "put").await?;
    Ok(Some(etag(revision)))
}

/// `Backend::remove`.
pub(crate) async fn remove(store: &NatsStateStore, key: &str, etag: Option<&ETag>) -> Result<()> {
    let nats_key = nats_key(key)?;
    let mut headers = HeaderMap::new();
    match store.inner.remove_mode {
        RemoveMode::Delete => headers.insert(KV_OPERATION, "DEL"),
        RemoveMode::Purge => {
            headers.insert(KV_OPERATION, "PURGE");
            headers.insert(async_nats::header::NATS_ROLLUP, "sub");
        }
    }
    if let Some(etag) = etag {
        expect_revision(&mut headers, parse_etag(key, etag)?);
        return store.publish(key, &nats_key, headers, Bytes::new(), "remove").await.map(drop);
    }
    // Removing what is not there writes nothing (no marker, no watch
    // event): the read is the removal's point in time. A value is removed
    // at the revision read; a write in between is removed too, at its own.
    for _ in 0..REMOVE_ATTEMPTS {
        let Current::Live { revision, .. } = store.current(key, &nats_key).await? else {
            return Ok(());
        };
        let mut headers = headers.clone();
        expect_revision(&mut headers, revision);
        match store.publish(key, &nats_key, headers, Bytes::new(), "remove").await {
            Err(e) if e.kind() == ErrorKind::Conflict => continue,
            done => return done.map(drop),
        }
    }
    // Still racing with writers: remove whatever is there now.
    store.publish(key, &nats_key, headers, Bytes::new(), "remove").await.map(drop)
}

/// Sends a write built from `headers` (`send`) and sends it again while the
/// server refuses it unchecked: its condition was not checked and nothing was
/// written, so once the write in flight lands the server can check it. Only
/// a conditional write can be refused so, and only then are headers cloned.
pub(crate) async fn resend_unchecked<T, F, Fut>(headers: HeaderMap, mut send: F) -> Result<T, PublishError>
where
    F: FnMut(HeaderMap) -> Fut,
    Fut: Future<Output = Result<T, PublishError>>,
{
    if headers.get(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE).is_none() {
        return send(headers).await;
    }
    let mut resends = 0;
    loop {
        match send(headers.clone()).await {
            Err(e) if is_unchecked(&e) && pause_to_resend(&mut resends).await => {}
            sent => return sent,
        }
    }
}

/// Waits before sending again a write refused unchecked, longer each time
/// (2, 4, .. 16 ms); false once it was sent again `UNCHECKED_RESENDS` times.
pub(crate) async fn pause_to_resend(resends: &mut u64) -> bool {
    if *resends >= UNCHECKED_RESENDS {
        return false;
    }
    *resends += 1;
    tokio::time::sleep(Duration::from_millis(2 * *resends)).await;
    true
}

/// The condition that the key's last message is at `revision` (`0`: it has
/// none), checked by the server.
pub(crate) fn expect_revision(headers: &mut HeaderMap, revision: u64) {
    headers.insert(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, HeaderValue::from(revision));
}

impl NatsStateStore {
    /// The subject a write to a (mapped) key goes to.
    pub(crate) fn subject(&self, nats_key: &str) -> String {
        format!("{}{nats_key}", self.inner.publish_prefix)
    }

    /// Adds the TTL of a write. On a bucket that keeps history, a value
    /// with a TTL rolls the key's history up (`in_batch`: refused, rollups
    /// are not allowed in atomic batches): an older revision left below it
    /// would come back when the server expires it.
    pub(crate) fn ttl_headers(
        &self,
        key: &str,
        headers: &mut HeaderMap,
        ttl: Option<Duration>,
        in_batch: bool,
    ) -> Result<()> {
        let Some(ttl) = ttl else { return Ok(()) };
        // Core hands TTLs over already rounded up to the declared
        // granularity, whole seconds.
        let secs = ttl.as_secs();
        if self.inner.history != 1 {
            if in_batch {
                return Err(Error::unsupported(format!(
                    "a TTL inside a transaction needs a bucket with history 1; bucket {:?} keeps {}",
                    self.inner.bucket, self.inner.history
                )));
            }
            // The server raises a shorter TTL to its marker TTL on such buckets.
            if let Some(markers) = self.inner.marker_ttl
                && ttl < markers
            {
                let msg = format!(
                    "bucket {:?} keeps history, where the server raises TTLs under its marker TTL ({}s) to it; \
                     use a TTL of at least that, or a bucket with shorter markers (BucketSettings::ttl_markers)",
                    self.inner.bucket,
                    markers.as_secs()
                );
                return Err(Error::new(ErrorKind::InvalidArgument, msg).with_key(key));
            }
            headers.insert(async_nats::header::NATS_ROLLUP, "sub");
        }
        headers.insert(async_nats::header::NATS_MESSAGE_TTL, HeaderValue::from(secs));
        Ok(())
    }

    /// Publishes one message and waits for its acknowledgement; its revision.
    async fn publish(
        &self,
        key: &str,
        nats_key: &str,
        headers: HeaderMap,
        payload: Bytes,
        what: &str,
    ) -> Result<u64> {
        let subject = Subject::from(self.subject(nats_key));
        let js = &self.inner.js;
        let sent = resend_unchecked(headers, |headers| {
            // Cheap clones: a subject and a payload share their bytes.
            let (subject, payload) = (subject.clone(), payload.clone());
            async move { js.publish_with_headers(subject, headers, payload).await?.await }
        });
        sent.await.map(|ack| ack.sequence).map_err(|e| publish_error(key, what, e))
    }

    /// A create-only write.
    async fn create(
        &self,
        key: &str,
        nats_key: &str,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<Option<ETag>> {
        // A delete marker or an expired value is no value: the write goes
        // over it, guarded by its revision. Losing that race means another
        // message landed: a value (the key exists), or only another marker
        // (a remove, a transaction's remove), and then the key is still
        // absent and the write tries again on the new marker.
        let mut expected = 0;
        for _ in 0..CREATE_ATTEMPTS {
            let mut conditional = headers.clone();
            expect_revision(&mut conditional, expected);
            match self.publish(key, nats_key, conditional, payload.clone(), "put").await {
                Ok(revision) => return Ok(Some(etag(revision))),
                Err(e) if e.kind() == ErrorKind::Conflict => {}
                Err(e) => return Err(e),
            }
            expected = match self.current(key, nats_key).await? {
                Current::Live { .. } => return Err(Error::already_exists(key)),
                current => current.revision(),
            };
        }
        Err(contended(key))
    }
}
