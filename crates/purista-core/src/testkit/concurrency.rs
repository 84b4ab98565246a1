//! Concurrency checks, written once for any store: clients, each on a store
//! instance of its own, run a random workload on a few keys while a fault
//! may strike, and what they saw is checked (SPEC §11).
//!
//! - [`linearizable`]: get / upsert / create / update-if-ETag / remove /
//!   remove-if-ETag (each write now and then as a one-step `transaction`,
//!   when the store has them), recorded as a history
//!   and checked per key against a register
//!   ([`linearizability::check`](super::linearizability::check)).
//! - [`bank`]: Jepsen's bank test: transfers in transactions, readers of
//!   every account through `get_state`; the total never changes.
//!
//! An operation that fails with `Timeout`, `Unavailable` or `Backend`, or
//! runs past [`Workload::op_timeout`], counts as possibly applied; a
//! `Conflict` as definitely not applied. Any other error fails the check.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use parking_lot::Mutex;

use super::{
    Factory,
    linearizability::{self, BankRead, Call, FOREIGN, Operation, Outcome, Value, Verdict},
    unique,
};
use crate::{Capabilities, ETag, Error, ErrorKind, Json, Op, PutOptions, StateStore, StoreConfig};

/// Accounts in the bank test, and the money they hold (Jepsen's defaults).
const ACCOUNTS: usize = 8;
const TOTAL: i64 = 100;
/// The largest transfer.
const MAX_TRANSFER: i64 = 5;
/// While the fault runs, a client goes on past `ops_per_client`, up to
/// this many times as many operations.
const STRETCH: usize = 50;
/// How long the final reads may keep retrying after a fault.
const SETTLE: Duration = Duration::from_secs(30);
/// ETags a client may pick from, per key (the newest ones seen).
const ETAG_POOL: usize = 8;

/// What the clients do.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Store instances (each from [`Factory::store`], so its own connection),
    /// one client on each.
    pub instances: usize,
    /// Keys the clients share ([`bank`] uses 8 accounts whatever this says).
    pub keys: usize,
    /// Operations each client runs; a client goes on while the fault has
    /// not finished (up to 50 times as many), so that the fault meets traffic.
    pub ops_per_client: usize,
    /// How often each operation is picked ([`bank`]: half transfers, half reads).
    pub mix: Mix,
    /// A client pauses up to this long (at random) between operations; with
    /// zero it yields instead, now and then.
    pub think: Duration,
    /// An operation still running after this long is abandoned as
    /// indeterminate (set the store's own request timeout below it).
    pub op_timeout: Duration,
    /// The seed of every random choice (default: `PURISTA_TESTKIT_SEED`,
    /// else the clock). It replays the choices, not the timing.
    pub seed: Option<u64>,
}

impl Default for Workload {
    /// Eight clients, four keys, 200 operations each: some 1,600 calls,
    /// enough for races to meet on every key, a few seconds against a
    /// local server on a loaded 2-core machine (the Dapr emulator takes
    /// longest: up to some 15 s for both checks).
    fn default() -> Self {
        Workload {
            instances: 8,
            keys: 4,
            ops_per_client: 200,
            mix: Mix::default(),
            think: Duration::ZERO,
            op_timeout: Duration::from_secs(10),
            seed: None,
        }
    }
}

/// Relative weights of the operations [`linearizable`] runs. Operations a
/// store's capabilities lack are left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    /// `get_value`, or `get_entry` (which also learns an ETag).
    pub get: u32,
    /// `get_state` of every key.
    pub get_state: u32,
    /// `set_state`, or `put` (which may return an ETag).
    pub upsert: u32,
    /// `put` with `PutOptions::create()`.
    pub create: u32,
    /// `put` with `PutOptions::update(etag)`, with a recent or stale ETag.
    pub update: u32,
    /// `remove` without an ETag.
    pub remove: u32,
    /// `remove` with a recent or stale ETag.
    pub remove_if: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix { get: 3, get_state: 1, upsert: 2, create: 1, update: 3, remove: 1, remove_if: 1 }
    }
}

#[derive(Debug, Clone, Copy)]
enum Choice {
    Get,
    GetState,
    Upsert,
    Create,
    Update,
    Remove,
    RemoveIf,
}

impl Mix {
    fn allowed(mut self, caps: Capabilities) -> Mix {
        if !caps.etag {
            (self.update, self.remove_if) = (0, 0);
        }
        if !caps.create_only {
            self.create = 0;
        }
        self
    }

    fn weights(&self) -> [(Choice, u32); 7] {
        [
            (Choice::Get, self.get),
            (Choice::GetState, self.get_state),
            (Choice::Upsert, self.upsert),
            (Choice::Create, self.create),
            (Choice::Update, self.update),
            (Choice::Remove, self.remove),
            (Choice::RemoveIf, self.remove_if),
        ]
    }

    fn total(&self) -> u64 {
        self.weights().iter().map(|(_, w)| u64::from(*w)).sum()
    }

    fn pick(&self, rng: &mut Rng) -> Choice {
        let mut n = rng.next() % self.total().max(1);
        for (choice, weight) in self.weights() {
            if n < u64::from(weight) {
                return choice;
            }
            n -= u64::from(weight);
        }
        Choice::Get
    }
}

/// What a run did and found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `linearizable` or `bank`.
    pub check: &'static str,
    /// The store's name.
    pub store: String,
    /// The seed (`PURISTA_TESTKIT_SEED` replays the choices).
    pub seed: u64,
    /// Why nothing was checked (no store, a missing capability).
    pub skipped: Option<String>,
    /// Histories checked: keys for `linearizable`, 1 for `bank`.
    pub histories: usize,
    /// Operations recorded (`bank`: transfers and reads attempted).
    pub ops: usize,
    /// Operations refused with `Conflict`.
    pub conflicts: usize,
    /// Operations whose outcome is unknown.
    pub indeterminate: usize,
    /// `bank`: reads of every account checked.
    pub reads: usize,
    /// How long the clients ran.
    pub run_time: Duration,
    /// How long the check took.
    pub check_time: Duration,
    /// What the check found wrong, in full (`None`: nothing).
    pub violation: Option<String>,
}

impl Report {
    fn new(check: &'static str, seed: u64) -> Self {
        Report { check, seed, ..Report::default() }
    }

    /// Whether the check found nothing wrong.
    pub fn passed(&self) -> bool {
        self.violation.is_none()
    }

    /// Panics with the full report if the check found something wrong.
    #[track_caller]
    pub fn assert_passed(&self) {
        if let Some(violation) = &self.violation {
            panic!("{self}\n{violation}");
        }
    }

    fn skip(mut self, why: impl Into<String>) -> Self {
        let why = why.into();
        eprintln!("[purista-testkit] {} skipped: {why}", self.check);
        self.skipped = Some(why);
        self
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(why) = &self.skipped {
            return write!(f, "[purista-testkit] {} skipped: {why}", self.check);
        }
        write!(
            f,
            "[purista-testkit] {} on {}: {} histories, {} ops ({} conflicts, {} indeterminate",
            self.check, self.store, self.histories, self.ops, self.conflicts, self.indeterminate
        )?;
        if self.check == "bank" {
            write!(f, ", {} reads checked", self.reads)?;
        }
        write!(
            f,
            "), ran {} ms, checked in {} ms, seed {:#x}: {}",
            self.run_time.as_millis(),
            self.check_time.as_millis(),
            self.seed,
            if self.passed() { "passed" } else { "VIOLATION" },
        )
    }
}

/// The default workload; panics with the shortest non-linearizable window
/// if the store is not linearizable per key.
pub async fn linearizable(factory: &impl Factory) {
    linearizable_with(factory, Workload::default(), async {}).await.assert_passed();
}

/// Jepsen's bank test with the default workload; panics if a read sees
/// money created or destroyed. Needs ETags and transactions.
pub async fn bank(factory: &impl Factory) {
    bank_with(factory, Workload::default(), async {}).await.assert_passed();
}

/// Runs `workload` while `fault` runs, checks the history per key, and
/// reports (without panicking; the figures also go to stderr).
///
/// Every write writes a value of its own, so a value names its write, and
/// an ETag stands for the value it was read with (`get_entry`) or written
/// with (`put`'s answer): update-if-ETag is compare-and-set on that value.
/// Clients share the ETags they see, newest first but stale ones too.
/// After the clients and the fault finish, every key is read once more, so
/// the state the fault left behind is checked too.
pub async fn linearizable_with(
    factory: &impl Factory,
    workload: Workload,
    fault: impl Future<Output = ()> + Send,
) -> Report {
    let mut report = Report::new("linearizable", seed(&workload));
    let Some(stores) = instances(factory, workload.instances).await else {
        return report.skip("no store");
    };
    report.store = stores[0].name().to_owned();
    let caps = stores[0].capabilities();
    let mix = workload.mix.allowed(caps);
    if mix.total() == 0 {
        return report.skip("the mix has no operation this store supports");
    }
    let run = unique("linearizable");
    let keys: Vec<String> = (0..workload.keys.max(1)).map(|k| format!("{run}-k{k}")).collect();
    let history = Arc::new(History::new(keys));
    let fault_over = Arc::new(AtomicBool::new(false));
    let clients = stores.iter().enumerate().map(|(id, store)| {
        let mut client = Client {
            id,
            store: store.clone(),
            history: history.clone(),
            rng: Rng::new(report.seed, id as u64),
            timeout: workload.op_timeout,
            etag: caps.etag,
            transactions: caps.transactions,
            written: 0,
        };
        let mut pace = Pace::new(&workload, fault_over.clone());
        async move {
            while pace.next(&mut client.rng).await {
                let choice = mix.pick(&mut client.rng);
                let key = client.rng.below(client.history.keys.len());
                client.run(choice, key).await;
            }
        }
    });
    let started = Instant::now();
    drive(clients.collect(), fault, &fault_over).await;
    history.read_back(&stores[0], workload.op_timeout).await;
    report.run_time = started.elapsed();
    cleanup(&stores, &history.keys).await;

    let ops = std::mem::take(&mut *history.ops.lock());
    report.histories = history.keys.len();
    report.ops = ops.len();
    report.conflicts = ops.iter().filter(|o| o.outcome == Outcome::Conflict).count();
    report.indeterminate = ops.iter().filter(|o| o.outcome == Outcome::Indeterminate).count();
    let checking = Instant::now();
    let verdict = linearizability::check(&ops);
    report.check_time = checking.elapsed();
    let mut found = history.unexpected.lock().clone();
    match verdict {
        Verdict::Linearizable => {}
        Verdict::Violation(v) => found.push(v.to_string()),
        Verdict::Undecided { key, ops } => found
            .push(format!("the search gave up on key {key:?} ({ops} ops): too many concurrent operations")),
    }
    finish(report, found)
}

/// Jepsen's bank test: 8 accounts holding 100 in all; transfers of 1 to 5
/// between two accounts, each a `transaction` of two update-if-ETag writes
/// after reading both accounts; readers read every account with
/// `get_state`. Every read must find every account, none negative, and
/// the total unchanged; that includes a final read after `fault`.
pub async fn bank_with(
    factory: &impl Factory,
    workload: Workload,
    fault: impl Future<Output = ()> + Send,
) -> Report {
    let mut report = Report::new("bank", seed(&workload));
    let Some(stores) = instances(factory, workload.instances).await else {
        return report.skip("no store");
    };
    report.store = stores[0].name().to_owned();
    let caps = stores[0].capabilities();
    if !(caps.etag && caps.transactions) {
        let why = format!("{} lacks ETags or transactions", report.store);
        return report.skip(why);
    }
    let run = unique("bank");
    let accounts: Vec<String> = (0..ACCOUNTS).map(|a| format!("{run}-account{a}")).collect();
    for (a, name) in accounts.iter().enumerate() {
        let balance = TOTAL / ACCOUNTS as i64 + i64::from((a as i64) < TOTAL % ACCOUNTS as i64);
        if let Err(e) = stores[0].set_state(name, json(balance)).await {
            return finish(report, vec![format!("opening the accounts failed: {e:?}")]);
        }
    }
    let bank = Arc::new(Bank::new(accounts));
    let fault_over = Arc::new(AtomicBool::new(false));
    let clients = stores.iter().enumerate().map(|(id, store)| {
        let (store, bank) = (store.clone(), bank.clone());
        let mut rng = Rng::new(report.seed, id as u64);
        let mut pace = Pace::new(&workload, fault_over.clone());
        let timeout = workload.op_timeout;
        async move {
            while pace.next(&mut rng).await {
                if rng.coin() {
                    bank.transfer(id, &*store, &mut rng, timeout).await;
                } else {
                    bank.read(id, &*store, timeout).await;
                }
            }
        }
    });
    drive(clients.collect(), fault, &fault_over).await;
    let settled = bank.start + SETTLE;
    while !bank.read(stores.len(), &*stores[0], workload.op_timeout).await && Instant::now() < settled {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    report.run_time = bank.start.elapsed();
    cleanup(&stores, &bank.accounts).await;

    let reads = std::mem::take(&mut *bank.reads.lock());
    report.histories = 1;
    report.ops = bank.ops.load(Ordering::Relaxed);
    report.conflicts = bank.conflicts.load(Ordering::Relaxed);
    report.indeterminate = bank.indeterminate.load(Ordering::Relaxed);
    report.reads = reads.len();
    let checking = Instant::now();
    let mut found = bank.unexpected.lock().clone();
    if let Err(v) = linearizability::check_bank(TOTAL, &reads) {
        found.push(v.to_string());
    }
    report.check_time = checking.elapsed();
    finish(report, found)
}

fn finish(mut report: Report, found: Vec<String>) -> Report {
    if !found.is_empty() {
        let seed = format!("(PURISTA_TESTKIT_SEED={:#x} replays the choices)", report.seed);
        report.violation = Some(format!("{}\n{seed}", found.join("\n")));
    }
    eprintln!("{report}");
    report
}

/// `n` instances, or `None` when the factory has no store.
async fn instances(factory: &impl Factory, n: usize) -> Option<Vec<Arc<dyn StateStore>>> {
    let mut stores = Vec::new();
    for _ in 0..n.max(1) {
        stores.push(factory.store(StoreConfig::default()).await?);
    }
    Some(stores)
}

/// Runs the clients on tasks of their own alongside `fault`; a client's
/// panic is the caller's.
async fn drive(
    clients: Vec<impl Future<Output = ()> + Send + 'static>,
    fault: impl Future<Output = ()> + Send,
    fault_over: &AtomicBool,
) {
    let tasks: Vec<_> = clients.into_iter().map(tokio::spawn).collect();
    let fault = async {
        fault.await;
        fault_over.store(true, Ordering::Release);
    };
    let ((), joined) = tokio::join!(fault, futures_util::future::join_all(tasks));
    for result in joined {
        if let Err(e) = result
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// Removes what the run wrote and releases the instances (best effort: a
/// server the fault left down is not the check's concern).
async fn cleanup(stores: &[Arc<dyn StateStore>], keys: &[String]) {
    for key in keys {
        let _ = tokio::time::timeout(Duration::from_secs(2), stores[0].remove_state(key)).await;
    }
    for store in stores {
        let _ = tokio::time::timeout(Duration::from_secs(2), store.destroy()).await;
    }
}

/// How many operations a client runs, and the pause between them.
struct Pace {
    done: usize,
    min: usize,
    max: usize,
    think: Duration,
    fault_over: Arc<AtomicBool>,
}

impl Pace {
    fn new(workload: &Workload, fault_over: Arc<AtomicBool>) -> Self {
        let min = workload.ops_per_client;
        Pace { done: 0, min, max: min.saturating_mul(STRETCH), think: workload.think, fault_over }
    }

    /// Whether the client runs another operation (after a pause).
    async fn next(&mut self, rng: &mut Rng) -> bool {
        if self.done >= self.max || (self.done >= self.min && self.fault_over.load(Ordering::Acquire)) {
            return false;
        }
        if self.think.is_zero() {
            if rng.coin() {
                tokio::task::yield_now().await;
            }
        } else {
            let nanos = u64::try_from(self.think.as_nanos()).unwrap_or(u64::MAX);
            tokio::time::sleep(Duration::from_nanos(rng.next() % nanos.max(1))).await;
        }
        self.done += 1;
        true
    }
}

/// How a call ended, as far as the checks are concerned.
enum Answer<T> {
    Done(T),
    Conflict,
    /// Maybe applied, maybe not.
    Unknown,
    /// An error no check expects.
    Failed(Error),
}

async fn attempt<T>(timeout: Duration, call: impl Future<Output = crate::Result<T>>) -> Answer<T> {
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Answer::Unknown,
        Ok(Ok(value)) => Answer::Done(value),
        Ok(Err(e)) => match e.kind() {
            ErrorKind::Conflict => Answer::Conflict,
            ErrorKind::Timeout | ErrorKind::Unavailable | ErrorKind::Backend => Answer::Unknown,
            _ => Answer::Failed(e),
        },
    }
}

fn json<T: serde::Serialize>(value: T) -> Json {
    Json::from(serde_json::json!(value))
}

fn decode(value: &Json) -> Value {
    value.decode::<Value>().unwrap_or(FOREIGN)
}

/// The history the clients of [`linearizable_with`] record.
#[derive(Debug)]
struct History {
    start: Instant,
    keys: Vec<String>,
    /// Per key, ETags seen with the value each stands for, oldest first.
    etags: Mutex<Vec<Vec<(ETag, Value)>>>,
    ops: Mutex<Vec<Operation>>,
    unexpected: Mutex<Vec<String>>,
}

impl History {
    fn new(keys: Vec<String>) -> Self {
        let etags = Mutex::new(vec![Vec::new(); keys.len()]);
        History { start: Instant::now(), keys, etags, ops: Mutex::default(), unexpected: Mutex::default() }
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn record(&self, client: usize, key: usize, call: Call, outcome: Outcome, invoked: Duration) {
        let completed = self.now();
        let key = self.keys[key].clone();
        self.ops.lock().push(Operation { client, key, call, outcome, invoked, completed });
    }

    fn remember(&self, key: usize, etag: Option<ETag>, value: Value) {
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
    fn etag(&self, key: usize, rng: &mut Rng) -> Option<(ETag, Value)> {
        let etags = self.etags.lock();
        let pool = &etags[key];
        let i = if rng.below(3) < 2 { pool.len().checked_sub(1)? } else { rng.below(pool.len()) };
        pool.get(i).cloned()
    }

    /// Reads every key once more, retrying while the store recovers.
    async fn read_back(&self, store: &Arc<dyn StateStore>, timeout: Duration) {
        let settled = Instant::now() + SETTLE;
        for (k, key) in self.keys.iter().enumerate() {
            loop {
                let invoked = self.now();
                match attempt(timeout, store.get_value(key)).await {
                    Answer::Done(value) => {
                        let value = value.as_ref().map(decode);
                        self.record(usize::MAX, k, Call::Get, Outcome::Read(value), invoked);
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

/// One client of [`linearizable_with`].
struct Client {
    id: usize,
    store: Arc<dyn StateStore>,
    history: Arc<History>,
    rng: Rng,
    timeout: Duration,
    etag: bool,
    transactions: bool,
    written: u64,
}

impl Client {
    /// Whether the next write goes as a one-step `transaction` (one time
    /// in four, if the store has them): a backend's transactions take
    /// another path to the server than its single calls.
    fn as_transaction(&mut self) -> bool {
        self.transactions && self.rng.below(4) == 0
    }

    /// A value no other write writes.
    fn fresh(&mut self) -> Value {
        self.written += 1;
        (self.id as u64 + 1) * 1_000_000 + self.written
    }

    /// Records `answer`, turned into an outcome by `done`; an unexpected
    /// error is kept for the report instead.
    fn settle<T>(
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

    async fn run(&mut self, choice: Choice, k: usize) {
        let (store, history, t) = (self.store.clone(), self.history.clone(), self.timeout);
        let key = history.keys[k].as_str();
        match choice {
            Choice::Get if self.etag && self.rng.coin() => self.get_entry(k).await,
            Choice::Get => {
                let invoked = history.now();
                let answer = attempt(t, store.get_value(key)).await;
                self.settle(k, Call::Get, invoked, answer, |v| Outcome::Read(v.as_ref().map(decode)));
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

    async fn get_entry(&mut self, k: usize) {
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
    async fn get_state(&mut self) {
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
            self.settle(k, Call::Get, invoked, answer, Outcome::Read);
        }
    }
}

/// The shared state of [`bank_with`]'s clients.
#[derive(Debug)]
struct Bank {
    accounts: Vec<String>,
    start: Instant,
    reads: Mutex<Vec<BankRead>>,
    ops: AtomicUsize,
    conflicts: AtomicUsize,
    indeterminate: AtomicUsize,
    unexpected: Mutex<Vec<String>>,
}

impl Bank {
    fn new(accounts: Vec<String>) -> Self {
        Bank {
            accounts,
            start: Instant::now(),
            reads: Mutex::default(),
            ops: AtomicUsize::new(0),
            conflicts: AtomicUsize::new(0),
            indeterminate: AtomicUsize::new(0),
            unexpected: Mutex::default(),
        }
    }

    fn fail(&self, what: String) {
        self.unexpected.lock().push(what);
    }

    fn count(counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Moves 1 to 5 between two accounts, if the first holds that much.
    async fn transfer(&self, client: usize, store: &dyn StateStore, rng: &mut Rng, timeout: Duration) {
        let from = rng.below(ACCOUNTS);
        let to = (from + 1 + rng.below(ACCOUNTS - 1)) % ACCOUNTS;
        let amount = 1 + rng.below(MAX_TRANSFER as usize) as i64;
        Self::count(&self.ops);
        let mut seen = Vec::new();
        for a in [from, to] {
            let entry = match attempt(timeout, store.get_entry(&self.accounts[a])).await {
                Answer::Done(Some(entry)) => entry,
                Answer::Done(None) => return self.fail(format!("client {client}: account {a} is missing")),
                Answer::Unknown => return Self::count(&self.indeterminate),
                Answer::Conflict => {
                    return self.fail(format!("client {client}: reading account {a}: conflict"));
                }
                Answer::Failed(e) => {
                    return self.fail(format!("client {client}: reading account {a}: {e:?}"));
                }
            };
            match entry.value.decode::<i64>() {
                Ok(balance) if balance >= 0 => seen.push((balance, entry.etag)),
                _ => return self.fail(format!("client {client}: account {a} holds {}", entry.value)),
            }
        }
        let Ok([(from_balance, from_etag), (to_balance, to_etag)]) = <[_; 2]>::try_from(seen) else { return };
        if from_balance < amount {
            return;
        }
        // Let other clients in between the reads and the write, even on a
        // store whose calls never wait.
        tokio::task::yield_now().await;
        let ops = vec![
            Op::put_with(&self.accounts[from], json(from_balance - amount), PutOptions::update(from_etag)),
            Op::put_with(&self.accounts[to], json(to_balance + amount), PutOptions::update(to_etag)),
        ];
        match attempt(timeout, store.transaction(ops)).await {
            Answer::Done(()) => {}
            Answer::Conflict => Self::count(&self.conflicts),
            Answer::Unknown => Self::count(&self.indeterminate),
            Answer::Failed(e) => self.fail(format!("client {client}: transfer {from} -> {to}: {e:?}")),
        }
    }

    /// Reads every account in one `get_state`; false when the outcome is unknown.
    async fn read(&self, client: usize, store: &dyn StateStore, timeout: Duration) -> bool {
        let names: Vec<&str> = self.accounts.iter().map(String::as_str).collect();
        let invoked = self.start.elapsed();
        Self::count(&self.ops);
        match attempt(timeout, store.get_state(&names)).await {
            Answer::Done(map) => {
                let balances = names
                    .iter()
                    .map(|n| map.get(*n).cloned().flatten().and_then(|v| v.decode::<i64>().ok()))
                    .collect();
                let completed = self.start.elapsed();
                self.reads.lock().push(BankRead { client, invoked, completed, balances });
                true
            }
            Answer::Unknown => {
                Self::count(&self.indeterminate);
                false
            }
            Answer::Conflict => {
                self.fail(format!("client {client}: get_state answered conflict"));
                true
            }
            Answer::Failed(e) => {
                self.fail(format!("client {client}: get_state: {e:?}"));
                true
            }
        }
    }
}

/// The seed: the workload's, else `PURISTA_TESTKIT_SEED` (decimal or `0x`
/// hex), else the clock.
fn seed(workload: &Workload) -> u64 {
    if let Some(seed) = workload.seed {
        return seed;
    }
    if let Ok(text) = std::env::var("PURISTA_TESTKIT_SEED") {
        let text = text.trim();
        let parsed = match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
        };
        return parsed.unwrap_or_else(|_| panic!("PURISTA_TESTKIT_SEED={text:?} is not a number"));
    }
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    nanos ^ u64::from(std::process::id()) << 32
}

/// SplitMix64: small, fast, and enough for picking operations.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    /// The stream of client `stream` for `seed`.
    fn new(seed: u64, stream: u64) -> Self {
        Rng(seed ^ stream.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}
