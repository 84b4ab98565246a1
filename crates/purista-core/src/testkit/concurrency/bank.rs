//! Jepsen's bank test: transfers in transactions, readers of every account.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use super::{drive::*, workload::*, *};
use crate::testkit::{
    Factory,
    linearizability::{self, BankRead},
    unique,
};
use crate::{Op, PutOptions, StateStore};

/// Accounts in the bank test, and the money they hold (Jepsen's defaults).
pub(super) const ACCOUNTS: usize = 8;
pub(super) const TOTAL: i64 = 100;
/// The largest transfer.
pub(super) const MAX_TRANSFER: i64 = 5;

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
    let (mut report, stores) = match begin("bank", factory, &workload).await {
        Ok(begun) => begun,
        Err(skipped) => return skipped,
    };
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

/// The shared state of [`bank_with`]'s clients.
#[derive(Debug)]
pub(super) struct Bank {
    pub(super) accounts: Vec<String>,
    pub(super) start: Instant,
    pub(super) reads: Mutex<Vec<BankRead>>,
    pub(super) ops: AtomicUsize,
    pub(super) conflicts: AtomicUsize,
    pub(super) indeterminate: AtomicUsize,
    pub(super) unexpected: Mutex<Vec<String>>,
}

impl Bank {
    pub(super) fn new(accounts: Vec<String>) -> Self {
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

    pub(super) fn fail(&self, what: String) {
        self.unexpected.lock().push(what);
    }

    pub(super) fn count(counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Moves 1 to 5 between two accounts, if the first holds that much.
    pub(super) async fn transfer(
        &self,
        client: usize,
        store: &dyn StateStore,
        rng: &mut Rng,
        timeout: Duration,
    ) {
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
    pub(super) async fn read(&self, client: usize, store: &dyn StateStore, timeout: Duration) -> bool {
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
