//! A client of the register workload and the history it records.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use super::{drive::*, workload::*, *};
use crate::testkit::linearizability::{Call, Operation, Outcome, Value};
use crate::{ETag, Error, ErrorKind, Op, PutOptions, StateStore};

/// ETags a client may pick from, per key (the newest ones seen).
pub(super) const ETAG_POOL: usize = 8;

/// The history the clients of [`linearizable_with`] record.
#[derive(Debug)]
pub(super) struct History {
    pub(super) start: Instant,
    pub(super) keys: Vec<String>,
    /// Per key, ETags seen with the value each stands for, oldest first.
    pub(super) etags: Mutex<Vec<Vec<(ETag, Value)>>>,
    pub(super) ops: Mutex<Vec<Operation>>,
    pub(super) unexpected: Mutex<Vec<String>>,
}

impl History {
    pub(super) fn new(keys: Vec<String>) -> Self {
        let etags = Mutex::new(vec![Vec::new(); keys.len()]);
        History { start: Instant::now(), keys, etags, ops: Mutex::default(), unexpected: Mutex::default() }
    }

    pub(super) fn now(&self) -> Duration {
        self.start.elapsed()
    }

    pub(super) fn record(&self, client: usize, key: usize, call: Call, outcome: Outcome, invoked: Duration) {
        let completed = self.now();
        let key = self.keys[key].clone();
        self.ops.lock().push(Operation { client, key, call, outcome, invoked, completed });
    }

    pub(super) fn remember(&self, key: usize, etag: Option<ETag>, value: Value) {
        let Some(etag) = etag else { return };
        let mut etags = self.etags.lock();
        let pool = &mut etags[key];
        if !pool.iter().any(|(e, v)| *e == etag && *v == value) {
            pool.push((etag, value));
            if pool.len() > ETAG_POOL {
                pool.remove(0);
            }
        }
    }

    /// The newest ETag seen two times in three, else any recent one.
    pub(super) fn etag(&self, key: usize, rng: &mut Rng) -> Option<(ETag, Value)> {
        let etags = self.etags.lock();
        let pool = &etags[key];
        let i = if rng.below(3) < 2 { pool.len().checked_sub(1)? } else { rng.below(pool.len()) };
        pool.get(i).cloned()
    }

    /// Reads every key once more, retrying while the store recovers.
    pub(super) async fn read_back(&self, store: &Arc<dyn StateStore>, timeout: Duration) {
        let settled = Instant::now() + SETTLE;
        let call = read_call(store);
        for (k, key) in self.keys.iter().enumerate() {
            loop {
                let invoked = self.now();
                match attempt(timeout, store.get_value(key)).await {
                    Answer::Done(value) => {
                        let value = value.as_ref().map(decode);
                        self.record(usize::MAX, k, call, Outcome::Read(value), invoked);
                        break;
                    }
                    Answer::Failed(e) => {
                        self.unexpected.lock().push(format!("final read of {key:?}: {e:?}"));
                        break;
                    }
                    _ if Instant::now() >= settled => break,
                    _ => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            }
        }
    }
}

/// How `store` records a `get_value` (or one name of `get_state`): a cached
/// read where it declares stale reads (`get_entry` never is one).
pub(super) fn read_call(store: &Arc<dyn StateStore>) -> Call {
    if store.capabilities().stale_reads.is_some() { Call::CachedGet } else { Call::Get }
}

/// One client of [`linearizable_with`].
pub(super) struct Client {
    pub(super) id: usize,
    pub(super) store: Arc<dyn StateStore>,
    pub(super) history: Arc<History>,
    pub(super) rng: Rng,
    pub(super) timeout: Duration,
    pub(super) etag: bool,
    pub(super) transactions: bool,
    pub(super) written: u64,
}

impl Client {
    /// Whether the next write goes as a one-step `transaction` (one time
    /// in four, if the store has them): a backend's transactions take
    /// another path to the server than its single calls.
    pub(super) fn as_transaction(&mut self) -> bool {
        self.transactions && self.rng.below(4) == 0
    }

    /// A value no other write writes.
    pub(super) fn fresh(&mut self) -> Value {
        self.written += 1;
        (self.id as u64 + 1) * 1_000_000 + self.written
    }

    /// Records `answer`, turned into an outcome by `done`; an unexpected
    /// error is kept for the report instead.
    pub(super) fn settle<T>(
        &self,
        key: usize,
        call: Call,
        invoked: Duration,
        answer: Answer<T>,
        done: impl FnOnce(T) -> Outcome,
    ) {
        let outcome = match answer {
            Answer::Done(value) => done(value),
            Answer::Conflict => Outcome::Conflict,
            Answer::Unknown => Outcome::Indeterminate,
            Answer::Failed(e) => {
                let key = &self.history.keys[key];
                let what = format!("client {}: {call} on {key:?} failed: {e:?}", self.id);
                self.history.unexpected.lock().push(what);
                return;
            }
        };
        self.history.record(self.id, key, call, outcome, invoked);
    }

    pub(super) async fn run(&mut self, choice: Choice, k: usize) {
        let (store, history, t) = (self.store.clone(), self.history.clone(), self.timeout);
        let key = history.keys[k].as_str();
        match choice {
            Choice::Get if self.etag && self.rng.coin() => self.get_entry(k).await,
            Choice::Get => {
                let invoked = history.now();
                let answer = attempt(t, store.get_value(key)).await;
                self.settle(k, read_call(&store), invoked, answer, |v| Outcome::Read(v.as_ref().map(decode)));
            }
            Choice::GetState => self.get_state().await,
            Choice::Upsert if self.as_transaction() => {
                let v = self.fresh();
                let invoked = history.now();
                let answer = attempt(t, store.transaction(vec![Op::put(key, json(v))])).await;
                self.settle(k, Call::Upsert(v), invoked, answer, |()| Outcome::Ok);
            }
            Choice::Upsert => {
                let v = self.fresh();
                let invoked = history.now();
                if self.etag && self.rng.coin() {
                    let answer = attempt(t, store.put(key, json(v), PutOptions::default())).await;
                    self.settle(k, Call::Upsert(v), invoked, answer, |etag| {
                        history.remember(k, etag, v);
                        Outcome::Ok
                    });
                } else {
                    let answer = attempt(t, store.set_state(key, json(v))).await;
                    self.settle(k, Call::Upsert(v), invoked, answer, |()| Outcome::Ok);
                }
            }
            Choice::Create if self.as_transaction() => {
                let v = self.fresh();
                let invoked = history.now();
                let op = Op::put_with(key, json(v), PutOptions::create());
                let answer = attempt(t, store.transaction(vec![op])).await;
                self.settle(k, Call::Create(v), invoked, answer, |()| Outcome::Ok);
            }
            Choice::Create => {
                let v = self.fresh();
                let invoked = history.now();
                let answer = attempt(t, store.put(key, json(v), PutOptions::create())).await;
                self.settle(k, Call::Create(v), invoked, answer, |etag| {
                    history.remember(k, etag, v);
                    Outcome::Ok
                });
            }
            Choice::Update | Choice::RemoveIf => {
                let Some((etag, expected)) = history.etag(k, &mut self.rng) else {
                    // No ETag seen yet for this key: learn one.
                    return self.get_entry(k).await;
                };
                let tx = self.as_transaction();
                if let Choice::Update = choice {
                    let new = self.fresh();
                    let call = Call::Update { expected, new };
                    let invoked = history.now();
                    if tx {
                        let op = Op::put_with(key, json(new), PutOptions::update(etag));
                        let answer = attempt(t, store.transaction(vec![op])).await;
                        return self.settle(k, call, invoked, answer, |()| Outcome::Ok);
                    }
                    let answer = attempt(t, store.put(key, json(new), PutOptions::update(etag))).await;
                    self.settle(k, call, invoked, answer, |etag| {
                        history.remember(k, etag, new);
                        Outcome::Ok
                    });
                } else {
                    let invoked = history.now();
                    let answer = if tx {
                        attempt(t, store.transaction(vec![Op::remove_if(key, etag)])).await
                    } else {
                        attempt(t, store.remove(key, Some(&etag))).await
                    };
                    self.settle(k, Call::RemoveIf { expected }, invoked, answer, |()| Outcome::Ok);
                }
            }
            Choice::Remove => {
                let tx = self.as_transaction();
                let invoked = history.now();
                let answer = if tx {
                    attempt(t, store.transaction(vec![Op::remove(key)])).await
                } else {
                    attempt(t, store.remove(key, None)).await
                };
                self.settle(k, Call::Remove, invoked, answer, |()| Outcome::Ok);
            }
        }
    }

    pub(super) async fn get_entry(&mut self, k: usize) {
        let history = self.history.clone();
        let invoked = history.now();
        let answer = attempt(self.timeout, self.store.get_entry(&history.keys[k])).await;
        self.settle(k, Call::Get, invoked, answer, |entry| {
            Outcome::Read(entry.map(|entry| {
                let v = decode(&entry.value);
                history.remember(k, Some(entry.etag), v);
                v
            }))
        });
    }

    /// One read of every key, recorded as one read per key over the same interval.
    pub(super) async fn get_state(&mut self) {
        let history = self.history.clone();
        let names: Vec<&str> = history.keys.iter().map(String::as_str).collect();
        let invoked = history.now();
        let answer = attempt(self.timeout, self.store.get_state(&names)).await;
        let answer = match answer {
            Answer::Done(map) => Answer::Done(Some(map)),
            Answer::Conflict => Answer::Conflict,
            Answer::Unknown => Answer::Unknown,
            Answer::Failed(e) => Answer::Failed(e),
        };
        for (k, name) in names.iter().enumerate() {
            let answer = match &answer {
                Answer::Done(Some(map)) => match map.get(*name) {
                    Some(value) => Answer::Done(value.as_ref().map(decode)),
                    None => Answer::Failed(Error::new(ErrorKind::Backend, "get_state left this name out")),
                },
                Answer::Done(None) | Answer::Unknown => Answer::Unknown,
                Answer::Conflict => Answer::Conflict,
                Answer::Failed(e) => Answer::Failed(Error::new(e.kind(), e.to_string())),
            };
            self.settle(k, read_call(&self.store), invoked, answer, Outcome::Read);
        }
    }
}
