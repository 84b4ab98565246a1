//! Concurrency checks, written once for any store: clients, each on a store
//! instance of its own (or a few to an instance, with
//! [`Workload::clients_per_instance`]), run a random workload on a few keys
//! while a fault may strike, and what they saw is checked.
//!
//! - [`linearizable`]: get / upsert / create / update-if-ETag / remove /
//!   remove-if-ETag (each write now and then as a one-step `transaction`,
//!   when the store has them), recorded as a history
//!   and checked per key against a register
//!   ([`linearizability::check`](super::linearizability::check)).
//! - [`lease`]: holders of one lease write under it with fenced writes,
//!   some paused past their TTL; tokens must strictly increase, leases
//!   never overlap, and no stale write lands after a newer holder's.
//! - [`rate_limit_with`]: fixed- and sliding-window limits checked as fast
//!   as the clients can; no window allows more than the limit.
//! - [`bank`]: Jepsen's bank test: transfers in transactions, readers of
//!   every account through `get_state`; the total never changes.
//!
//! An operation that fails with `Timeout`, `Unavailable` or `Backend`, or
//! runs past [`Workload::op_timeout`], counts as possibly applied; a
//! `Conflict` as definitely not applied. Any other error fails the check.

mod bank;
mod client;
mod counter;
mod drive;
mod fencing;
mod lease;
mod rate_limit;
mod workload;

use std::{
    future::Future,
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, Instant},
};

use super::{
    Factory,
    linearizability::{self, Outcome, Verdict},
    unique,
};

use self::{client::*, drive::*, workload::*};
pub use bank::bank_with;
pub use counter::counter_with;
pub use fencing::{GrantRecord, LeaseHistory, WriteRecord, check_fencing};
pub use lease::{lease_unfenced, lease_with};
pub use rate_limit::rate_limit_with;
pub use workload::{Mix, Workload};

/// How long the final reads may keep retrying after a fault.
pub(super) const SETTLE: Duration = Duration::from_secs(30);

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
    pub(super) fn new(check: &'static str, seed: u64) -> Self {
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

    pub(super) fn skip(mut self, why: impl Into<String>) -> Self {
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

/// Increments from every client with the default workload; panics if an
/// acknowledged increment was lost or applied twice. Needs counters.
pub async fn counter(factory: &impl Factory) {
    counter_with(factory, Workload::default(), async {}).await.assert_passed();
}

/// Fixed- and sliding-window limits checked from every instance with the
/// default workload; panics if a window allowed more than its limit.
/// Needs counters and TTLs.
pub async fn rate_limit(factory: &impl Factory) {
    rate_limit_with(factory, Workload::default(), async {}).await.assert_passed();
}

/// Lease holders on every instance with the default workload; panics if
/// tokens went back, two leases overlapped or a stale fenced write landed.
/// Needs ETags, create-only writes, TTLs and transactions.
pub async fn lease(factory: &impl Factory) {
    lease_with(factory, Workload::default(), async {}).await.assert_passed();
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
    let (mut report, stores) = match begin("linearizable", factory, &workload).await {
        Ok(begun) => begun,
        Err(skipped) => return skipped,
    };
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
    // A near cache is checked against the staleness it declares.
    let verdict = match caps.stale_reads {
        Some(bound) => linearizability::check_bounded(&ops, bound),
        None => linearizability::check(&ops),
    };
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

pub(super) fn finish(mut report: Report, found: Vec<String>) -> Report {
    if !found.is_empty() {
        let seed = format!("(PURISTA_TESTKIT_SEED={:#x} replays the choices)", report.seed);
        report.violation = Some(format!("{}\n{seed}", found.join("\n")));
    }
    eprintln!("{report}");
    report
}
