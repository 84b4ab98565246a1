//! Concurrent increments of one counter from one instance, sent as one.
//!
//! While an increment of a key is on its way to the server, the next ones of
//! that key queue here; when it returns, the queue goes as one increment by
//! the sum of its deltas, and each caller gets the sum it would have got
//! alone: the one before it in the queue plus its own delta. The batch is
//! applied atomically by the backend, so it is as if its increments had run
//! back to back, in queue order, within each caller's call (linearizable as
//! each alone). A server round trip then carries any number of increments:
//! a hot rate-limit counter costs one call per round trip, not one per
//! request, and compare-and-swap stores stop conflicting with themselves.
//!
//! An increment that finds nothing of its key on its way goes at once,
//! from its caller, as it would alone: an uncontended counter pays for a
//! map entry, nothing more. Batches behind it are sent by a task of their
//! own, so a caller that stops waiting (a timeout, a `select!`) never
//! strands the others; an increment whose caller stopped waiting before it
//! was sent is not applied.

use std::{collections::HashMap, sync::Arc, time::Duration};

use parking_lot::Mutex;
use tokio::sync::oneshot;
use tracing::Instrument;

use super::Backend;
use crate::{Error, ErrorKind, Result};

/// Sends concurrent increments of one key as one: while one is on its way,
/// the next ones wait here and then go together, by their sum, each caller
/// answered the sum it would have seen alone. A network backend keeps one
/// for all its handles and returns it from
/// [`Backend::combiner`](super::Backend::combiner); batches are sent by a
/// task of their own, so a caller that stops waiting strands nobody.
/// [`StoreConfig::combine_increments`](crate::StoreConfig::combine_increments)
/// switches it off.
///
/// Inside: the increments of each key waiting for the one on its way; a
/// key is present while an increment of it is on its way.
#[derive(Clone, Default)]
pub struct Combiner(Arc<Mutex<HashMap<String, Vec<Waiter>>>>);

impl std::fmt::Debug for Combiner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Combiner").field("keys_in_flight", &self.0.lock().len()).finish()
    }
}

struct Waiter {
    delta: i64,
    ttl: Option<Duration>,
    answer: oneshot::Sender<Result<i64>>,
}

impl Combiner {
    /// `Backend::increment` of `store`, combined with the concurrent ones of
    /// the same key. `key` is the backend's (prefixed) key.
    pub async fn increment<B: Backend>(
        &self,
        store: &B,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64> {
        let queued = {
            let mut queues = self.0.lock();
            match queues.get_mut(key) {
                Some(queue) => {
                    let (answer, answered) = oneshot::channel();
                    queue.push(Waiter { delta, ttl, answer });
                    Some(answered)
                }
                None => {
                    queues.insert(key.to_owned(), Vec::new());
                    None
                }
            }
        };
        if let Some(answered) = queued {
            return answered.await.unwrap_or_else(|_| {
                Err(Error::new(ErrorKind::Backend, "the task sending increments ended without an answer")
                    .with_key(key))
            });
        }
        // Nothing of this key on its way: this one goes at once, from here
        // (it carries no one else, so stopping waiting strands nobody);
        // what queued behind it goes after, from a task.
        let next = Next { queues: self, store, key };
        let result = Backend::increment(store, key, delta, ttl).await;
        if tokio::runtime::Handle::try_current().is_err() {
            // Outside a runtime nothing could run that task: send here.
            std::mem::forget(next);
            Sender { queues: self.clone(), store: store.detached(), key: key.to_owned(), done: false }
                .run()
                .await;
        }
        result
    }
}

/// Held by a caller whose increment went at once: when it ends (answered,
/// abandoned or panicking), the increments queued behind it are handed
/// to a [`Sender`] task, or the key's empty queue is removed.
struct Next<'a, B: Backend> {
    queues: &'a Combiner,
    store: &'a B,
    key: &'a str,
}

impl<B: Backend> Drop for Next<'_, B> {
    fn drop(&mut self) {
        let mut queues = self.queues.0.lock();
        if queues.get(self.key).is_some_and(Vec::is_empty) {
            queues.remove(self.key);
            return;
        }
        drop(queues);
        let sender = Sender {
            queues: self.queues.clone(),
            store: self.store.detached(),
            key: self.key.to_owned(),
            done: false,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(sender.run().in_current_span())),
            // Abandoned outside a runtime: the sender's drop removes the
            // queue, and the callers there hear so.
            Err(_) => drop(sender),
        }
    }
}

/// Sends a key's queued increments until the queue is empty.
struct Sender<B> {
    queues: Combiner,
    store: B,
    key: String,
    /// Whether it emptied and removed its queue.
    done: bool,
}

/// A sender that ended otherwise (its task dropped with the runtime) drops
/// its queue: the callers there hear so, and the next increment of the key
/// starts a sender again.
impl<B> Drop for Sender<B> {
    fn drop(&mut self) {
        if !self.done {
            self.queues.0.lock().remove(&self.key);
        }
    }
}

impl<B: Backend> Sender<B> {
    async fn run(mut self) {
        loop {
            let waiting = {
                let mut queues = self.queues.0.lock();
                let Some(queue) = queues.get_mut(&self.key) else {
                    self.done = true;
                    return;
                };
                // Callers that stopped waiting are not applied.
                queue.retain(|w| !w.answer.is_closed());
                if queue.is_empty() {
                    queues.remove(&self.key);
                    self.done = true;
                    return;
                }
                std::mem::take(queue)
            };
            let mut waiting = waiting.into_iter().peekable();
            while waiting.peek().is_some() {
                // Deltas of one sign: every sum between the first and the
                // last then fits in an i64 when the last does.
                let (mut batch, mut negative) = (Vec::new(), None);
                while let Some(w) =
                    waiting.next_if(|w| w.delta == 0 || negative.is_none_or(|n| n == (w.delta < 0)))
                {
                    if w.delta != 0 {
                        negative = Some(w.delta < 0);
                    }
                    batch.push(w);
                }
                self.send(batch).await;
            }
        }
    }

    /// One increment by the batch's sum. When that is refused (an overflow,
    /// a value that is no counter), nothing was written: then one by one,
    /// so that exactly the increments that would fail alone fail.
    async fn send(&self, batch: Vec<Waiter>) {
        let total = batch.iter().try_fold(0i64, |sum, w| sum.checked_add(w.delta));
        if let (Some(total), [first, _, ..]) = (total, batch.as_slice()) {
            // The first increment creates a missing counter, with its TTL.
            match Backend::increment(&self.store, &self.key, total, first.ttl).await {
                Ok(sum) => {
                    // Checked: the sum is the server's answer, not ours.
                    let mut before = sum.checked_sub(total);
                    for w in batch {
                        before = before.and_then(|b| b.checked_add(w.delta));
                        let _ = w.answer.send(before.ok_or_else(|| {
                            Error::new(
                                ErrorKind::Backend,
                                format!("the store answered a sum of {sum} to {total}"),
                            )
                            .with_key(&self.key)
                        }));
                    }
                    return;
                }
                Err(e) if e.kind() != ErrorKind::InvalidValue => {
                    // Whether it was applied is unknown: each caller hears so.
                    for w in batch {
                        let _ = w.answer.send(Err(e.duplicate()));
                    }
                    return;
                }
                Err(_) => {}
            }
        }
        for w in batch {
            if !w.answer.is_closed() {
                let result = Backend::increment(&self.store, &self.key, w.delta, w.ttl).await;
                let _ = w.answer.send(result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering::SeqCst};

    use super::*;
    use crate::{Capabilities, ETag, Json, PutOptions, StateStore, StoreConfig};

    /// A counter that takes a millisecond per call, and answers `wrong`
    /// sums or panics when asked.
    #[derive(Debug, Clone, Default)]
    struct Slow {
        config: StoreConfig,
        shared: Arc<Shared>,
    }

    #[derive(Debug, Default)]
    struct Shared {
        value: AtomicI64,
        calls: AtomicUsize,
        /// Extra milliseconds a call takes.
        slower: std::sync::atomic::AtomicU64,
        wrong: std::sync::atomic::AtomicBool,
        panics: std::sync::atomic::AtomicBool,
        combiner: Combiner,
    }

    impl Backend for Slow {
        fn name(&self) -> &str {
            "Slow"
        }
        fn config(&self) -> &StoreConfig {
            &self.config
        }
        fn with_config(&self, config: StoreConfig) -> Self {
            Slow { config, shared: self.shared.clone() }
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities { counters: true, ..Capabilities::default() }
        }
        fn combiner(&self) -> Option<&Combiner> {
            Some(&self.shared.combiner)
        }
        async fn get_state(&self, keys: &[&str]) -> Result<Vec<Option<Json>>> {
            Ok(vec![Some(Json::integer(self.shared.value.load(SeqCst))); keys.len()])
        }
        async fn put(&self, _: &str, _: Json, _: &PutOptions) -> Result<Option<ETag>> {
            Ok(None)
        }
        async fn remove(&self, _: &str, _: Option<&ETag>) -> Result<()> {
            Ok(())
        }
        async fn increment(&self, _: &str, delta: i64, _: Option<Duration>) -> Result<i64> {
            self.shared.calls.fetch_add(1, SeqCst);
            tokio::time::sleep(Duration::from_millis(1 + self.shared.slower.load(SeqCst))).await;
            assert!(!self.shared.panics.load(SeqCst), "a backend that panics");
            let sum = self.shared.value.fetch_add(delta, SeqCst) + delta;
            Ok(if self.shared.wrong.load(SeqCst) { i64::MIN } else { sum })
        }
    }

    /// `tasks` increments at once; a caller stranded for 10 s fails the test.
    async fn burst(store: &Arc<Slow>, tasks: i64) -> Vec<Result<i64>> {
        tokio::time::timeout(Duration::from_secs(10), burst_unbounded(store, tasks))
            .await
            .expect("no increment stranded")
    }

    async fn burst_unbounded(store: &Arc<Slow>, tasks: i64) -> Vec<Result<i64>> {
        let calls: Vec<_> = (0..tasks)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { StateStore::increment(&*store, "k", 1, None).await })
            })
            .collect();
        let mut answers = Vec::new();
        for call in calls {
            // A panic reaches the caller whose call it was, as it would
            // without combining.
            answers.push(call.await.unwrap_or_else(|e| {
                assert!(e.is_panic());
                Err(Error::new(ErrorKind::Backend, "the call panicked"))
            }));
        }
        answers
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_increments_go_as_one_and_answer_sums_of_their_own() {
        let store = Arc::new(Slow::default());
        let mut sums: Vec<i64> = burst(&store, 100).await.into_iter().map(Result::unwrap).collect();
        sums.sort_unstable();
        assert_eq!(sums, (1..=100).collect::<Vec<_>>());
        let calls = store.shared.calls.load(SeqCst);
        assert!(calls < 50, "100 increments at once took {calls} calls");
        assert!(store.shared.combiner.0.lock().is_empty(), "no queue left behind");
    }

    /// Waits (up to 10 s) until `what` holds of the queue of "k".
    async fn until(store: &Slow, what: impl Fn(Option<&Vec<Waiter>>) -> bool) {
        for _ in 0..10_000 {
            if what(store.shared.combiner.0.lock().get("k")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the queue never got there");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_queue_behind_an_abandoned_first_increment_is_still_sent() {
        let store = Arc::new(Slow::default());
        store.shared.slower.store(200, SeqCst);
        let first = tokio::spawn({
            let store = store.clone();
            async move { StateStore::increment(&*store, "k", 1, None).await }
        });
        until(&store, |queue| queue.is_some()).await;
        let behind = tokio::spawn({
            let store = store.clone();
            async move { burst_unbounded(&store, 10).await }
        });
        until(&store, |queue| queue.is_some_and(|q| q.len() == 10)).await;
        // Abandoned in flight: its increment is not applied (the test
        // backend adds after its sleep), the ones behind it are.
        first.abort();
        let mut sums: Vec<i64> = behind.await.unwrap().into_iter().map(Result::unwrap).collect();
        sums.sort_unstable();
        assert_eq!(sums, (1..=10).collect::<Vec<_>>());
        assert_eq!(store.shared.calls.load(SeqCst), 2, "the first alone, then the ten as one");
        assert!(store.shared.combiner.0.lock().is_empty(), "no queue left behind");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_combining_off_each_increment_is_a_call_of_its_own() {
        let config = StoreConfig::default().combine_increments(false);
        let store = Arc::new(Slow { config, ..Slow::default() });
        let mut sums: Vec<i64> = burst(&store, 20).await.into_iter().map(Result::unwrap).collect();
        sums.sort_unstable();
        assert_eq!(sums, (1..=20).collect::<Vec<_>>());
        assert_eq!(store.shared.calls.load(SeqCst), 20);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_sum_or_a_panic_fails_the_callers_and_strands_nobody() {
        let store = Arc::new(Slow::default());
        store.shared.wrong.store(true, SeqCst);
        let answers = burst(&store, 20).await;
        // The first goes alone (its sum is taken as is); a batch's cannot
        // be split and is refused.
        assert!(answers.iter().any(|a| a.as_ref().is_err_and(|e| e.kind() == ErrorKind::Backend)));
        store.shared.wrong.store(false, SeqCst);
        store.shared.panics.store(true, SeqCst);
        let answers = burst(&store, 20).await;
        assert!(answers.iter().all(|a| a.as_ref().is_err_and(|e| e.kind() == ErrorKind::Backend)));
        store.shared.panics.store(false, SeqCst);
        // The next increments find no stranded queue.
        assert!(burst(&store, 20).await.iter().all(Result::is_ok));
        assert!(store.shared.combiner.0.lock().is_empty());
    }
}
