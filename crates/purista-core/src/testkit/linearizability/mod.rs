//! Checkers for concurrent histories.
//!
//! - [`check`]: is a history of single-key operations linearizable against a
//!   register per key? The Wing–Gong search with Lowe's memoisation (a set of
//!   (linearized ops, state) pairs already explored), as Porcupine and Knossos
//!   run it, on each key apart: a history is linearizable iff each key's
//!   history is (locality), which keeps every search small.
//! - [`check_bank`]: Jepsen's bank invariant over reads of every account.
//!
//! Values are unique per write, so a value names the write that made it. An
//! ETag is modelled by the value it was read or written with: update-if-ETag
//! is compare-and-set on that value, and remove-if-ETag compare-and-remove.
//! (A store that hands the same ETag to two versions of a key fails the
//! check when a stale ETag then matches: that is the ABA defect ETags exist
//! to prevent.)
//!
//! [`check_bounded`] checks a store that declares bounded staleness (a near
//! cache): its cached reads may be stale by at most the bound, never older
//! than the reader's own last write; everything else is held to [`check`].
//!
//! An operation whose outcome is unknown (timed out, connection lost) may
//! have taken effect at any time after it was invoked, or never: its return
//! goes after every other event and any outcome is accepted for it, as
//! Porcupine's and Knossos's checkers do. Reads with an unknown outcome
//! constrain nothing and are dropped.

mod bank;
mod search;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, time::Duration};

pub use bank::{BankRead, BankViolation, check_bank};
use search::*;

/// A value as the workload writes it: unique per write.
pub type Value = u64;

/// A stored value the workload never wrote (or that does not decode).
pub const FOREIGN: Value = u64::MAX;

/// Stands for every earlier value a window does not mention.
const OTHER: Value = u64::MAX - 1;

/// Search steps allowed per key before giving up as undecided.
const BUDGET: u64 = 20_000_000;

/// What one operation on one key asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// Read the value (`get_value`, `get_entry`, one name of `get_state`).
    Get,
    /// A read that may be answered from a near cache (`get_value`, one name
    /// of `get_state`, on a store declaring `stale_reads`): a plain read to
    /// [`check`], a possibly stale one to [`check_bounded`].
    CachedGet,
    /// Write whatever is there.
    Upsert(Value),
    /// Write only if absent.
    Create(Value),
    /// Write `new` only if the value is still `expected` (update-if-ETag).
    Update { expected: Value, new: Value },
    /// Remove whatever is there.
    Remove,
    /// Remove only if the value is still `expected` (remove-if-ETag).
    RemoveIf { expected: Value },
}

/// What it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A read's value (`None`: absent).
    Read(Option<Value>),
    /// A write or remove succeeded.
    Ok,
    /// A conditional write or remove was refused (definitely not applied).
    Conflict,
    /// Timed out or lost in transit: maybe applied, maybe not.
    Indeterminate,
}

/// One operation on one key, with when it was invoked and when it completed
/// (for an indeterminate one: when the client gave up on it), measured from
/// the start of the run. Intervals are closed: equal instants overlap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Which client ran it.
    pub client: usize,
    /// The key it touched.
    pub key: String,
    /// What it asked for.
    pub call: Call,
    /// What it answered.
    pub outcome: Outcome,
    /// When it was invoked.
    pub invoked: Duration,
    /// When it completed.
    pub completed: Duration,
}

/// The result of [`check`].
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Every key's history has a linearization.
    Linearizable,
    /// One key's history has none.
    Violation(Violation),
    /// The search ran out of budget on a key (too many concurrent or
    /// indeterminate operations): neither proven nor refuted.
    Undecided {
        /// The key.
        key: String,
        /// Operations in its history.
        ops: usize,
    },
}

/// A key whose history no order of operations explains, with the shortest
/// window that shows it.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The key.
    pub key: String,
    /// Operations in its whole history.
    pub history: usize,
    /// The window's operations in invocation order, each with a note when
    /// the checker let it take effect or not (its outcome unknown, still
    /// pending when the window closes, or begun before the window).
    pub window: Vec<(Operation, Option<&'static str>)>,
    /// The states the window may start from (`None`: absent; `u64::MAX - 1`:
    /// any earlier value the window does not mention).
    pub starts: Vec<Option<Value>>,
}

/// Checks `history`, key by key. A cached read counts as a plain read.
pub fn check(history: &[Operation]) -> Verdict {
    check_reads(history, |_, read| read.invoked)
}

/// Checks `history` of a store declaring reads stale by at most `bound`:
/// a [`Call::CachedGet`] may answer any value its key held from `bound`
/// before the read was invoked, but none older than the reader's own last
/// write of the key (own writes are read at once), until it completed.
/// Every other operation is held to [`check`]'s rules.
pub fn check_bounded(history: &[Operation], bound: Duration) -> Verdict {
    check_reads(history, |key_ops, read| {
        let own_write = key_ops
            .iter()
            .filter(|o| o.client == read.client && !o.call.is_read() && o.completed <= read.invoked)
            // Just after it (equal instants would overlap), as plain reads.
            .map(|o| (o.completed + Duration::from_nanos(1)).min(read.invoked))
            .max();
        read.invoked.saturating_sub(bound).max(own_write.unwrap_or_default())
    })
}

/// Checks each key's history, a cached read taken as a plain read that may
/// take effect from `earliest(key's operations, the read)` on.
fn check_reads(history: &[Operation], earliest: impl Fn(&[&Operation], &Operation) -> Duration) -> Verdict {
    let mut keys: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        keys.entry(&op.key).or_default().push(op);
    }
    for (key, key_ops) in keys {
        let mut ops: Vec<Operation> = key_ops
            .iter()
            .map(|&o| match o.call {
                Call::CachedGet => Operation { call: Call::Get, invoked: earliest(&key_ops, o), ..o.clone() },
                _ => o.clone(),
            })
            .collect();
        ops.sort_by_key(|o| o.invoked);
        let ops: Vec<&Operation> = ops.iter().collect();
        let all = relax(&ops, Duration::MAX, 0);
        match search(&all, None) {
            Found::Yes => {}
            Found::No => return Verdict::Violation(shortest_window(key, &ops)),
            Found::OutOfBudget => return Verdict::Undecided { key: key.to_owned(), ops: ops.len() },
        }
    }
    Verdict::Linearizable
}

impl Call {
    /// A read of either kind.
    pub fn is_read(self) -> bool {
        matches!(self, Call::Get | Call::CachedGet)
    }
}
