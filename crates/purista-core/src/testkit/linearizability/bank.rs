//! Jepsen's bank invariant over reads of every account.

use std::{fmt, time::Duration};

use super::search::ms;

/// One read of every account (through `get_state`, so one snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankRead {
    /// Which client read.
    pub client: usize,
    /// When the read was invoked.
    pub invoked: Duration,
    /// When it completed.
    pub completed: Duration,
    /// One balance per account; `None`: missing, or not a number.
    pub balances: Vec<Option<i64>>,
}

/// A read that breaks the bank's invariant.
#[derive(Debug, Clone)]
pub struct BankViolation {
    /// The first bad read.
    pub read: BankRead,
    /// What is wrong with it.
    pub reason: String,
    /// How many reads were bad.
    pub bad: usize,
    /// How many reads were checked.
    pub reads: usize,
}

/// Jepsen's bank invariant: every read finds every account, no balance
/// below zero, and balances summing to `total`.
pub fn check_bank(total: i64, reads: &[BankRead]) -> Result<(), BankViolation> {
    let why = |read: &BankRead| -> Option<String> {
        if let Some(a) = read.balances.iter().position(Option::is_none) {
            return Some(format!("account {a} is missing or not a number"));
        }
        let balances: Vec<i64> = read.balances.iter().flatten().copied().collect();
        if let Some(a) = balances.iter().position(|b| *b < 0) {
            return Some(format!("account {a} is negative"));
        }
        let sum: i64 = balances.iter().sum();
        (sum != total).then(|| format!("balances sum to {sum}, not {total}"))
    };
    let mut bad = reads.iter().filter_map(|r| why(r).map(|reason| (r, reason)));
    let Some((read, reason)) = bad.next() else { return Ok(()) };
    Err(BankViolation { read: read.clone(), reason, bad: 1 + bad.count(), reads: reads.len() })
}

impl fmt::Display for BankViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} reads break the bank invariant; the first, by client {} [{} .. {}] ms, \
             read {:?}: {}",
            self.bad,
            self.reads,
            self.read.client,
            ms(self.read.invoked),
            ms(self.read.completed),
            self.read.balances,
            self.reason,
        )
    }
}
