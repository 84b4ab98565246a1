//! The Wing–Gong search with Lowe's memoisation on one key's operations,
//! and the shortest window that shows a violation.

use std::{
    collections::{BTreeSet, HashSet},
    fmt,
    time::Duration,
};

use super::*;

/// One operation as the search sees it: `returned: None` is "after everything".
#[derive(Debug, Clone, Copy)]
pub(super) struct KeyOp {
    pub(super) call: Call,
    pub(super) outcome: Outcome,
    pub(super) invoked: Duration,
    pub(super) returned: Option<Duration>,
    /// Index into the key's operations.
    pub(super) source: usize,
    pub(super) note: Option<&'static str>,
}

pub(super) const UNKNOWN: &str = "outcome unknown: may or may not have taken effect";
pub(super) const PENDING: &str = "still running when the window closes: may or may not take effect";
pub(super) const BEFORE: &str = "began before the window: may or may not take effect in it";

/// The operations invoked by `cut`, in the search's terms: those not
/// completed by then become indeterminate, and so do those from before
/// `from` (an index in invocation order) that overlap it; the rest from
/// before `from` are left out. Reads that become indeterminate are dropped.
pub(super) fn relax(ops: &[&Operation], cut: Duration, from: usize) -> Vec<KeyOp> {
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
        if note.is_some() && o.call.is_read() {
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
pub(super) fn shortest_window(key: &str, ops: &[&Operation]) -> Violation {
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
pub(super) fn starts(ops: &[&Operation], window: &[KeyOp], from: usize) -> Vec<Option<Value>> {
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

pub(super) fn violation(
    key: &str,
    ops: &[&Operation],
    window: Vec<KeyOp>,
    starts: Vec<Option<Value>>,
) -> Violation {
    Violation {
        key: key.to_owned(),
        history: ops.len(),
        window: window.iter().map(|w| (ops[w.source].clone(), w.note)).collect(),
        starts,
    }
}

pub(super) enum Found {
    Yes,
    No,
    OutOfBudget,
}

pub(super) type State = Option<Value>;

/// The register: the state after `call` answered `outcome` in `state`, or
/// `None` if it cannot have answered that.
pub(super) fn step(state: State, call: Call, outcome: Outcome) -> Option<State> {
    let applies = match call {
        Call::Create(_) => state.is_none(),
        Call::Update { expected, .. } | Call::RemoveIf { expected } => state == Some(expected),
        Call::Get | Call::CachedGet | Call::Upsert(_) | Call::Remove => true,
    };
    let after = match call {
        _ if !applies => state,
        Call::Get | Call::CachedGet => state,
        Call::Upsert(v) | Call::Create(v) | Call::Update { new: v, .. } => Some(v),
        Call::Remove | Call::RemoveIf { .. } => None,
    };
    let conditional = matches!(call, Call::Create(_) | Call::Update { .. } | Call::RemoveIf { .. });
    match (call, outcome) {
        // Taking effect if it can is the only choice that matters: not
        // taking effect is the same as taking effect after everything else.
        (_, Outcome::Indeterminate) => Some(after),
        (Call::Get | Call::CachedGet, Outcome::Read(v)) => (v == state).then_some(state),
        (Call::Get | Call::CachedGet, _) | (_, Outcome::Read(_)) => None,
        (_, Outcome::Ok) => applies.then_some(after),
        (_, Outcome::Conflict) => (conditional && !applies).then_some(state),
    }
}

pub(super) const NIL: usize = usize::MAX;

/// The Wing–Gong search with Lowe's memoisation, after Porcupine's
/// `checkSingle`: walk the events in time order; at a call, try to
/// linearize it now (unlink it and its return, restart from the front);
/// at a return of an operation not yet linearized, undo the last choice.
/// Succeeds once every operation with a known return is linearized (those
/// left have their return after everything, so they can go last).
pub(super) fn search(ops: &[KeyOp], start: State) -> Found {
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

pub(super) fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

pub(super) fn value(v: Option<Value>) -> String {
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
            Call::CachedGet => write!(f, "cached get"),
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
