//! Checkers for concurrent histories (SPEC §11).
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
//! An operation whose outcome is unknown (timed out, connection lost) may
//! have taken effect at any time after it was invoked, or never: its return
//! goes after every other event and any outcome is accepted for it, as
//! Porcupine's and Knossos's checkers do. Reads with an unknown outcome
//! constrain nothing and are dropped.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    fmt,
    time::Duration,
};

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

/// Checks `history`, key by key.
pub fn check(history: &[Operation]) -> Verdict {
    let mut keys: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        keys.entry(&op.key).or_default().push(op);
    }
    for (key, mut ops) in keys {
        ops.sort_by_key(|o| o.invoked);
        let all = relax(&ops, Duration::MAX, 0);
        match search(&all, None) {
            Found::Yes => {}
            Found::No => return Verdict::Violation(shortest_window(key, &ops)),
            Found::OutOfBudget => return Verdict::Undecided { key: key.to_owned(), ops: ops.len() },
        }
    }
    Verdict::Linearizable
}

/// One operation as the search sees it: `returned: None` is "after everything".
#[derive(Debug, Clone, Copy)]
struct KeyOp {
    call: Call,
    outcome: Outcome,
    invoked: Duration,
    returned: Option<Duration>,
    /// Index into the key's operations.
    source: usize,
    note: Option<&'static str>,
}

const UNKNOWN: &str = "outcome unknown: may or may not have taken effect";
const PENDING: &str = "still running when the window closes: may or may not take effect";
const BEFORE: &str = "began before the window: may or may not take effect in it";

/// The operations invoked by `cut`, in the search's terms: those not
/// completed by then become indeterminate, and so do those from before
/// `from` (an index in invocation order) that overlap it; the rest from
/// before `from` are left out. Reads that become indeterminate are dropped.
fn relax(ops: &[&Operation], cut: Duration, from: usize) -> Vec<KeyOp> {
    let start = ops.get(from).map_or(Duration::MAX, |o| o.invoked);
    let mut out = Vec::new();
    for (i, o) in ops.iter().enumerate().take_while(|(_, o)| o.invoked <= cut) {
        let note = if o.outcome == Outcome::Indeterminate {
            Some(UNKNOWN)
        } else if o.completed > cut {
            Some(PENDING)
        } else if i < from && o.completed >= start {
            Some(BEFORE)
        } else if i < from {
            continue;
        } else {
            None
        };
        if note.is_some() && o.call == Call::Get {
            continue;
        }
        let (outcome, returned) = match note {
            Some(_) => (Outcome::Indeterminate, None),
            None => (o.outcome, Some(o.completed)),
        };
        out.push(KeyOp { call: o.call, outcome, invoked: o.invoked, returned, source: i, note });
    }
    out
}

/// Finds the shortest window of a key's failing history: first the shortest
/// prefix (cut at a completion) that fails, then the latest start from which
/// the rest of that prefix fails whatever state it starts from.
fn shortest_window(key: &str, ops: &[&Operation]) -> Violation {
    let mut cuts: Vec<Duration> =
        ops.iter().filter(|o| o.outcome != Outcome::Indeterminate).map(|o| o.completed).collect();
    cuts.sort_unstable();
    cuts.dedup();
    // Failing is monotone in the cut; the last cut fails (it is the whole history).
    let (mut lo, mut hi) = (0, cuts.len().saturating_sub(1));
    while lo < hi {
        let mid = (lo + hi) / 2;
        let prefix = relax(ops, cuts[mid], 0);
        if matches!(search(&prefix, None), Found::No) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let cut = cuts.get(lo).copied().unwrap_or(Duration::MAX);
    let invoked = ops.iter().take_while(|o| o.invoked <= cut).count();
    for from in (1..invoked).rev() {
        let window = relax(ops, cut, from);
        let starts = starts(ops, &window, from);
        let fails = starts.iter().all(|s| matches!(search(&window, *s), Found::No));
        if fails {
            return violation(key, ops, window, starts);
        }
    }
    violation(key, ops, relax(ops, cut, 0), vec![None])
}

/// The states a window starting at `from` may begin in: absent, or a value
/// written before it. Values the window does not mention all behave alike,
/// so one stands for them.
fn starts(ops: &[&Operation], window: &[KeyOp], from: usize) -> Vec<Option<Value>> {
    let mut mentioned = HashSet::new();
    for op in window {
        match (op.call, op.outcome) {
            (Call::Update { expected, .. } | Call::RemoveIf { expected }, _) => {
                mentioned.insert(expected);
            }
            (_, Outcome::Read(Some(v))) => {
                mentioned.insert(v);
            }
            _ => {}
        }
    }
    let mut starts = BTreeSet::from([None]);
    for o in &ops[..from] {
        if let Call::Upsert(v) | Call::Create(v) | Call::Update { new: v, .. } = o.call {
            starts.insert(Some(if mentioned.contains(&v) { v } else { OTHER }));
        }
    }
    starts.into_iter().collect()
}

fn violation(key: &str, ops: &[&Operation], window: Vec<KeyOp>, starts: Vec<Option<Value>>) -> Violation {
    Violation {
        key: key.to_owned(),
        history: ops.len(),
        window: window.iter().map(|w| (ops[w.source].clone(), w.note)).collect(),
        starts,
    }
}

enum Found {
    Yes,
    No,
    OutOfBudget,
}

type State = Option<Value>;

/// The register: the state after `call` answered `outcome` in `state`, or
/// `None` if it cannot have answered that.
fn step(state: State, call: Call, outcome: Outcome) -> Option<State> {
    let applies = match call {
        Call::Create(_) => state.is_none(),
        Call::Update { expected, .. } | Call::RemoveIf { expected } => state == Some(expected),
        Call::Get | Call::Upsert(_) | Call::Remove => true,
    };
    let after = match call {
        _ if !applies => state,
        Call::Get => state,
        Call::Upsert(v) | Call::Create(v) | Call::Update { new: v, .. } => Some(v),
        Call::Remove | Call::RemoveIf { .. } => None,
    };
    let conditional = matches!(call, Call::Create(_) | Call::Update { .. } | Call::RemoveIf { .. });
    match (call, outcome) {
        // Taking effect if it can is the only choice that matters: not
        // taking effect is the same as taking effect after everything else.
        (_, Outcome::Indeterminate) => Some(after),
        (Call::Get, Outcome::Read(v)) => (v == state).then_some(state),
        (Call::Get, _) | (_, Outcome::Read(_)) => None,
        (_, Outcome::Ok) => applies.then_some(after),
        (_, Outcome::Conflict) => (conditional && !applies).then_some(state),
    }
}

const NIL: usize = usize::MAX;

/// The Wing–Gong search with Lowe's memoisation, after Porcupine's
/// `checkSingle`: walk the events in time order; at a call, try to
/// linearize it now (unlink it and its return, restart from the front);
/// at a return of an operation not yet linearized, undo the last choice.
/// Succeeds once every operation with a known return is linearized (those
/// left have their return after everything, so they can go last).
fn search(ops: &[KeyOp], start: State) -> Found {
    let mut budget = BUDGET;
    let n = ops.len();
    // Events: (op, is_return), in time order; calls before returns at equal
    // instants (closed intervals), unknown returns last.
    let mut events: Vec<(usize, bool)> = (0..n).flat_map(|i| [(i, false), (i, true)]).collect();
    events.sort_by_key(|&(i, ret)| {
        let at = if ret { ops[i].returned } else { Some(ops[i].invoked) };
        (at.is_none(), at, ret, i)
    });
    let head = events.len();
    let (mut next, mut prev) = (vec![NIL; head + 1], vec![NIL; head + 1]);
    let mut return_of = vec![NIL; n];
    let mut last = head;
    for (e, &(i, ret)) in events.iter().enumerate() {
        if ret {
            return_of[i] = e;
        }
        next[last] = e;
        prev[e] = last;
        last = e;
    }
    let unlink = |next: &mut [usize], prev: &mut [usize], e: usize| {
        next[prev[e]] = next[e];
        if next[e] != NIL {
            prev[next[e]] = prev[e];
        }
    };
    let relink = |next: &mut [usize], prev: &mut [usize], e: usize| {
        next[prev[e]] = e;
        if next[e] != NIL {
            prev[next[e]] = e;
        }
    };

    let mut left = ops.iter().filter(|o| o.returned.is_some()).count();
    let mut linearized = vec![0u64; n.div_ceil(64)];
    let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut chosen: Vec<(usize, State)> = Vec::new();
    let mut state = start;
    let mut entry = next[head];
    while left > 0 {
        if budget == 0 {
            return Found::OutOfBudget;
        }
        budget -= 1;
        let at = (entry != NIL).then(|| events[entry]);
        match at {
            Some((i, false)) => {
                if let Some(after) = step(state, ops[i].call, ops[i].outcome) {
                    linearized[i / 64] |= 1 << (i % 64);
                    if seen.insert((linearized.clone(), after)) {
                        chosen.push((entry, state));
                        state = after;
                        unlink(&mut next, &mut prev, entry);
                        unlink(&mut next, &mut prev, return_of[i]);
                        left -= usize::from(ops[i].returned.is_some());
                        entry = next[head];
                        continue;
                    }
                    linearized[i / 64] &= !(1 << (i % 64));
                }
                entry = next[entry];
            }
            // A return whose call is not linearized yet: undo the last choice.
            _ => {
                let Some((call, before)) = chosen.pop() else { return Found::No };
                let i = events[call].0;
                state = before;
                linearized[i / 64] &= !(1 << (i % 64));
                relink(&mut next, &mut prev, return_of[i]);
                relink(&mut next, &mut prev, call);
                left += usize::from(ops[i].returned.is_some());
                entry = next[call];
            }
        }
    }
    Found::Yes
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn value(v: Option<Value>) -> String {
    match v {
        None => "absent".into(),
        Some(FOREIGN) => "a value the workload never wrote".into(),
        Some(OTHER) => "any earlier value".into(),
        Some(v) => v.to_string(),
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Call::Get => write!(f, "get"),
            Call::Upsert(v) => write!(f, "upsert({v})"),
            Call::Create(v) => write!(f, "create({v})"),
            Call::Update { expected, new } => write!(f, "update-if({expected} -> {new})"),
            Call::Remove => write!(f, "remove"),
            Call::RemoveIf { expected } => write!(f, "remove-if({expected})"),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Outcome::Read(v) => f.write_str(&value(v)),
            Outcome::Ok => f.write_str("ok"),
            Outcome::Conflict => f.write_str("conflict"),
            Outcome::Indeterminate => f.write_str("unknown"),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.window.first().map_or(Duration::ZERO, |(o, _)| o.invoked);
        let last = self.window.iter().map(|(o, _)| o.completed).max().unwrap_or_default();
        let starts: Vec<String> = self.starts.iter().map(|s| value(*s)).collect();
        writeln!(
            f,
            "key {:?}: its history ({} ops) is not linearizable. Shortest window no order explains: \
             {} ops, {} ms .. {} ms, starting from {}:",
            self.key,
            self.history,
            self.window.len(),
            ms(first),
            ms(last),
            starts.join(" or "),
        )?;
        for (op, note) in &self.window {
            write!(
                f,
                "  client {:>2}  [{:>10} .. {:>10}] ms  {:<28} -> {}",
                op.client,
                ms(op.invoked),
                ms(op.completed),
                op.call.to_string(),
                op.outcome,
            )?;
            match note {
                Some(note) => writeln!(f, "  ({note})")?,
                None => writeln!(f)?,
            }
        }
        Ok(())
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// An operation by `client` over `[from, to]` (in ms) on key "k".
    fn op(client: usize, from: u64, to: u64, call: Call, outcome: Outcome) -> Operation {
        Operation {
            client,
            key: "k".into(),
            call,
            outcome,
            invoked: Duration::from_millis(from),
            completed: Duration::from_millis(to),
        }
    }

    fn on(key: &str, mut o: Operation) -> Operation {
        o.key = key.into();
        o
    }

    #[track_caller]
    fn rejected(history: &[Operation]) -> Violation {
        match check(history) {
            Verdict::Violation(v) => {
                eprintln!("{v}");
                v
            }
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    #[track_caller]
    fn accepted(history: &[Operation]) {
        match check(history) {
            Verdict::Linearizable => {}
            Verdict::Violation(v) => panic!("expected linearizable, got:\n{v}"),
            other => panic!("expected linearizable, got {other:?}"),
        }
    }

    use Call::*;
    use Outcome::{Conflict, Indeterminate as Unknown, Ok as Done, Read};

    #[test]
    fn stale_read_after_an_acknowledged_write_is_rejected() {
        let history = [
            op(0, 0, 1, Upsert(1), Done),
            op(0, 2, 3, Upsert(2), Done),
            op(1, 4, 5, Get, Read(Some(1))),
            op(1, 6, 7, Get, Read(Some(2))),
        ];
        let v = rejected(&history);
        // The window is the write it missed and the stale read.
        let calls: Vec<Call> = v.window.iter().map(|(o, _)| o.call).collect();
        assert_eq!(calls, [Upsert(2), Get], "{v}");
    }

    #[test]
    fn lost_update_is_rejected() {
        // Two clients read 1 and both update from it successfully.
        let history = [
            op(0, 0, 1, Upsert(1), Done),
            op(1, 2, 3, Get, Read(Some(1))),
            op(2, 2, 3, Get, Read(Some(1))),
            op(1, 4, 6, Update { expected: 1, new: 2 }, Done),
            op(2, 5, 7, Update { expected: 1, new: 3 }, Done),
        ];
        let v = rejected(&history);
        assert!(v.window.iter().any(|(o, _)| o.call == Update { expected: 1, new: 3 }), "{v}");
    }

    #[test]
    fn two_successful_creates_of_one_key_are_rejected() {
        let history = [op(0, 0, 2, Create(1), Done), op(1, 1, 3, Create(2), Done)];
        let v = rejected(&history);
        assert_eq!(v.window.len(), 2, "{v}");
        // ... unless a remove could come between them.
        accepted(&[op(0, 0, 2, Create(1), Done), op(2, 1, 2, Remove, Done), op(1, 1, 3, Create(2), Done)]);
    }

    #[test]
    fn stale_etag_that_succeeds_is_rejected() {
        let history = [
            op(0, 0, 1, Upsert(1), Done),
            op(0, 2, 3, Upsert(2), Done),
            op(1, 4, 5, Update { expected: 1, new: 3 }, Done),
        ];
        rejected(&history);
        let removed = [
            op(0, 0, 1, Upsert(1), Done),
            op(0, 2, 3, Upsert(2), Done),
            op(1, 4, 5, RemoveIf { expected: 1 }, Done),
        ];
        rejected(&removed);
    }

    #[test]
    fn impossible_conflicts_and_values_are_rejected() {
        // A conflict on a matching ETag, a create that conflicts with nothing,
        // a value nobody wrote, an unconditional write that conflicts.
        rejected(&[op(0, 0, 1, Upsert(1), Done), op(0, 2, 3, Update { expected: 1, new: 2 }, Conflict)]);
        rejected(&[op(0, 0, 1, Create(1), Conflict)]);
        rejected(&[op(0, 0, 1, Upsert(1), Done), op(1, 2, 3, Get, Read(Some(FOREIGN)))]);
        rejected(&[op(0, 0, 1, Upsert(1), Conflict)]);
        rejected(&[op(0, 0, 1, Upsert(1), Done), op(0, 2, 3, Remove, Done), op(1, 4, 5, Get, Read(Some(1)))]);
    }

    #[test]
    fn concurrent_histories_with_some_order_are_accepted() {
        accepted(&[]);
        accepted(&[
            op(0, 0, 10, Upsert(1), Done),
            op(1, 1, 2, Get, Read(None)),
            op(2, 3, 4, Get, Read(Some(1))),
            op(1, 5, 6, Get, Read(Some(1))),
            op(2, 7, 12, Update { expected: 1, new: 2 }, Done),
            op(1, 8, 9, Update { expected: 1, new: 3 }, Conflict),
            op(0, 11, 13, Create(4), Conflict),
            op(1, 14, 15, RemoveIf { expected: 2 }, Done),
            op(0, 16, 17, Create(5), Done),
            op(2, 18, 19, Get, Read(Some(5))),
        ]);
        // Different keys do not constrain each other.
        accepted(&[on("a", op(0, 0, 1, Upsert(1), Done)), on("b", op(1, 2, 3, Get, Read(None)))]);
    }

    #[test]
    fn indeterminate_operations_may_or_may_not_take_effect() {
        // A timed-out write read afterwards, long after it "failed".
        accepted(&[op(0, 0, 1, Upsert(1), Unknown), op(1, 50, 51, Get, Read(Some(1)))]);
        // ... or never seen.
        accepted(&[op(0, 0, 1, Upsert(1), Unknown), op(1, 50, 51, Get, Read(None))]);
        // ... explaining a create's conflict, then overwritten.
        accepted(&[
            op(0, 0, 1, Create(1), Unknown),
            op(1, 5, 6, Create(2), Conflict),
            op(1, 7, 8, Upsert(3), Done),
            op(2, 9, 10, Get, Read(Some(3))),
        ]);
        // Not before it was invoked.
        let v = rejected(&[op(1, 0, 1, Get, Read(Some(1))), op(0, 5, 6, Upsert(1), Unknown)]);
        assert_eq!(v.window.len(), 1, "{v}");
        // Not twice.
        rejected(&[
            op(0, 0, 1, Upsert(1), Unknown),
            op(1, 2, 3, Get, Read(Some(1))),
            op(1, 4, 5, Upsert(2), Done),
            op(1, 6, 7, Get, Read(Some(1))),
        ]);
        // A read with an unknown outcome constrains nothing.
        accepted(&[op(0, 0, 1, Upsert(1), Done), op(1, 2, 3, Get, Unknown)]);
    }

    #[test]
    fn shortest_window_leaves_out_the_history_before_it() {
        let mut history = Vec::new();
        for i in 0..50u64 {
            history.push(op(0, 10 * i, 10 * i + 5, Upsert(i + 1), Done));
            history.push(op(1, 10 * i + 6, 10 * i + 8, Get, Read(Some(i + 1))));
        }
        history.push(op(0, 600, 601, Upsert(100), Done));
        history.push(op(1, 602, 603, Get, Read(Some(50))));
        history.push(op(1, 604, 605, Get, Read(Some(100))));
        let v = rejected(&history);
        assert_eq!(v.history, 103);
        assert_eq!(v.window.len(), 2, "{v}");
        assert!(v.to_string().contains("upsert(100)"), "{v}");
    }

    #[test]
    fn large_concurrent_histories_are_decided() {
        // Eight clients, each write overlapping the others, each read seeing
        // the last write of the round before.
        let mut history = Vec::new();
        for round in 0..100u64 {
            let t = round * 100;
            for c in 0..8u64 {
                let v = round * 8 + c + 1;
                history.push(op(c as usize, t + c, t + 50, Upsert(v), Done));
            }
            let last = round * 8 + 8;
            history.push(op(9, t + 60, t + 61, Update { expected: last, new: 10_000 + round }, Done));
        }
        accepted(&history);
    }

    #[test]
    fn torn_bank_read_is_rejected() {
        let read = |balances: Vec<Option<i64>>| BankRead {
            client: 3,
            invoked: Duration::from_millis(1),
            completed: Duration::from_millis(2),
            balances,
        };
        let good = read(vec![Some(50), Some(50)]);
        assert!(check_bank(100, std::slice::from_ref(&good)).is_ok());
        // Mid-transfer: debited, not yet credited.
        let torn = read(vec![Some(45), Some(50)]);
        let err = check_bank(100, &[good.clone(), torn.clone(), torn]).unwrap_err();
        assert_eq!((err.bad, err.reads), (2, 3));
        assert!(err.to_string().contains("sum to 95"), "{err}");
        assert!(check_bank(100, &[read(vec![Some(-5), Some(105)])]).is_err());
        assert!(check_bank(100, &[read(vec![Some(100), None])]).is_err());
    }
}
