//! Known-bad histories the checkers must reject, and good ones they must accept.

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

#[track_caller]
fn bounded(history: &[Operation], ms: u64) -> Verdict {
    check_bounded(history, Duration::from_millis(ms))
}

#[test]
fn a_cached_read_may_be_stale_within_the_bound_only() {
    // Client 1 read 1 at 6-7, 4 ms after the write of 2 completed.
    let history =
        [op(0, 0, 1, Upsert(1), Done), op(0, 2, 3, Upsert(2), Done), op(1, 6, 7, CachedGet, Read(Some(1)))];
    rejected(&history);
    assert!(matches!(bounded(&history, 5), Verdict::Linearizable));
    assert!(matches!(bounded(&history, 2), Verdict::Violation(_)), "stale past a 2 ms bound");
    // A fresh read (`get_entry`) is never let off.
    let mut fresh = history.clone();
    fresh[2].call = Get;
    assert!(matches!(bounded(&fresh, 5), Verdict::Violation(_)));
}

#[test]
fn a_cached_read_never_misses_its_own_write() {
    // Within the bound, but client 0 wrote 2 itself.
    let history =
        [op(1, 0, 1, Upsert(1), Done), op(0, 2, 3, Upsert(2), Done), op(0, 4, 5, CachedGet, Read(Some(1)))];
    assert!(matches!(bounded(&history, 1_000), Verdict::Violation(_)));
    // Another client's read of 1 at the same time is fine.
    let mut other = history.clone();
    other[2].client = 2;
    assert!(matches!(bounded(&other, 1_000), Verdict::Linearizable));
}

#[test]
fn a_cached_read_of_a_value_never_written_is_rejected_whatever_the_bound() {
    let history = [op(0, 0, 1, Upsert(1), Done), op(1, 2, 3, CachedGet, Read(Some(7)))];
    assert!(matches!(bounded(&history, 1_000), Verdict::Violation(_)));
}
