//! The arithmetic of a decision, apart from the store: exact integers in
//! nanoseconds, so a decision never depends on float rounding.

use std::time::Duration;

use super::Decision;

/// A fixed window `window` ns long, `elapsed` ns into it, where this
/// request's increment returned `count`.
pub(super) fn fixed(limit: u64, window: u128, elapsed: u128, count: i64) -> Decision {
    // A counter someone drove below zero counts as unused.
    let count = u64::try_from(count).unwrap_or(0);
    match limit.checked_sub(count) {
        Some(remaining) => Decision::allow(limit, remaining),
        None => Decision::refuse(limit, nanos(window - elapsed)),
    }
}

/// A sliding window: the previous fixed window held `previous`, this
/// request's increment of the current one returned `count`.
pub(super) fn sliding(limit: u64, window: u128, elapsed: u128, previous: i64, count: i64) -> Decision {
    let previous = u128::try_from(previous).unwrap_or(0);
    let count = u128::try_from(count).unwrap_or(0);
    let limit_n = u128::from(limit);
    let used = weighted(previous, window, elapsed).saturating_add(count);
    if used <= limit_n {
        let remaining = u64::try_from(limit_n - used).unwrap_or(u64::MAX);
        return Decision::allow(limit, remaining);
    }
    let wait = if count <= limit_n {
        // This window has room once the previous one weighs less.
        passes_at(previous, limit_n - count, window) - elapsed
    } else {
        // This window is full: wait for the next, where it is the previous
        // one (its refused checks given back, so at most `limit` of it).
        (window - elapsed) + passes_at((count - 1).min(limit_n), limit_n.saturating_sub(1), window)
    };
    Decision::refuse(limit, nanos(wait.min(window)))
}

/// The part of `previous` a sliding window `elapsed` into the current fixed
/// window still covers, rounded down.
fn weighted(previous: u128, window: u128, elapsed: u128) -> u128 {
    previous.saturating_mul(window - elapsed) / window
}

/// The first instant (ns into a window) at which `previous`, weighted,
/// leaves room for `room` more requests and this one.
fn passes_at(previous: u128, room: u128, window: u128) -> u128 {
    // weighted(previous, e) <= room  <=>  previous * (window - e) < (room + 1) * window
    match previous.checked_sub(room + 1) {
        None => 0,
        Some(excess) => excess.saturating_mul(window) / previous + 1,
    }
}

/// The window's length as a key segment, in its largest whole unit, so one
/// length always gives one segment (`60s`, `1500ms`).
pub(super) fn label(window: Duration) -> String {
    let ns = window.as_nanos();
    [(1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us")]
        .into_iter()
        .find(|(unit, _)| ns.is_multiple_of(*unit))
        .map_or_else(|| format!("{ns}ns"), |(unit, name)| format!("{}{name}", ns / unit))
}

fn nanos(ns: u128) -> Duration {
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}
