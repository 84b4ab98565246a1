//! Rate limits: one budget per key and window across every instance, as a
//! deployment's instances share one backend. Cases assert counts, never
//! timings: a run the clock shows crossing a window boundary (its counts
//! then legitimately differ) is repeated on a new key with a window twice
//! as long, so a slow store gets the time it needs.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::future::join_all;

use super::support::*;
use crate::{
    Decision, ErrorKind, RateLimit, StateStore, StateStoreExt,
    testkit::{Factory, unique},
};

/// How many instances burst at once.
const INSTANCES: usize = 8;
/// How many windows, each twice the last, a case tries.
const ATTEMPTS: u32 = 4;

/// 8 instances checking 200 times at once into one fixed window: exactly
/// `limit` pass, each seeing its own remaining count; the refused wait at
/// most until the window ends. Another key has its own budget.
pub async fn rate_limit_fixed_burst(factory: &impl Factory) {
    const LIMIT: u64 = 50;
    let Some(all) = instances(factory).await else { return };
    let run = |w| RateLimit::fixed_window(LIMIT, w);
    let (key, limit, _, decisions) = burst_in_one_window(&all, run, Duration::from_secs(60), 200).await;
    assert_exact(&decisions, limit);
    let other = limit.check(&*all[1], &format!("{key}-other")).await.unwrap();
    assert_eq!((other.allowed(), other.remaining()), (true, LIMIT - 1), "another key, its own budget");
}

/// A fixed window's budget comes back once the window has passed: waiting
/// the longest `retry_after` given is enough, on any instance.
pub async fn rate_limit_fixed_window_resets(factory: &impl Factory) {
    const LIMIT: u64 = 5;
    let Some(all) = instances(factory).await else { return };
    let run = |w| RateLimit::fixed_window(LIMIT, w);
    let (key, limit, _, decisions) = burst_in_one_window(&all[..4], run, Duration::from_secs(1), 20).await;
    assert_exact(&decisions, limit);
    let wait = decisions.iter().filter_map(Decision::retry_after).max().expect("refused checks");
    tokio::time::sleep(wait).await;
    let after = limit.check(&*all[5], &key).await.unwrap();
    assert_eq!((after.allowed(), after.remaining()), (true, LIMIT - 1), "a new window, a new budget");
}

/// A window's count lasts as long as the window, however many checks
/// hammer it: a client refused 40 times, then quiet for 2 s, is still
/// refused in the same window (a counter whose expiry each increment
/// shortened would be gone, and pass the limit again).
pub async fn rate_limit_fixed_window_holds_under_hammering(factory: &impl Factory) {
    const LIMIT: u64 = 5;
    let Some(all) = instances(factory).await else { return };
    let mut window = Duration::from_secs(6);
    for _ in 0..ATTEMPTS {
        let limit = RateLimit::fixed_window(LIMIT, window);
        let key = unique("rate-hammer");
        let start = next_window(window).await;
        let mut passed = 0;
        for i in 0..8 * LIMIT {
            passed += u64::from(limit.check(&*all[i as usize % INSTANCES], &key).await.unwrap().allowed());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        passed += u64::from(limit.check(&*all[0], &key).await.unwrap().allowed());
        if position(window).0 == start {
            assert_eq!(passed, LIMIT, "{window:?} window: the count survived its hammering");
            return;
        }
        window *= 2;
    }
    panic!("each of {ATTEMPTS} runs crossed a window boundary, up to {window:?}: the store is too slow");
}

/// A burst into a sliding window passes exactly `limit` (no previous
/// window), and refused checks are given back: the counter holds only
/// what passed.
pub async fn rate_limit_sliding_burst(factory: &impl Factory) {
    const LIMIT: u64 = 50;
    let Some(all) = instances(factory).await else { return };
    let run = |w| RateLimit::sliding_window(LIMIT, w);
    let (key, limit, index, decisions) = burst_in_one_window(&all, run, Duration::from_secs(60), 200).await;
    assert_exact(&decisions, limit);
    // The counter's name is documented on `RateLimit`.
    let counter = format!("{key}:sliding-{}s:{index}", limit.window().as_secs());
    assert_eq!(all[0].get::<i64>(&counter).await.unwrap(), Some(LIMIT as i64), "refused checks given back");
}

/// A window full to the limit still weighs on the next one: a burst at
/// its start passes only the share the first window no longer covers
/// (a fixed window would pass the whole limit again); a client following
/// `retry_after` gets through.
pub async fn rate_limit_sliding_smooths_boundary(factory: &impl Factory) {
    const LIMIT: u64 = 10;
    let Some(all) = instances(factory).await else { return };
    let run = |w| RateLimit::sliding_window(LIMIT, w);
    let mut window = Duration::from_secs(2);
    for _ in 0..ATTEMPTS {
        let (key, limit, first_window, first) = burst_in_one_window(&all, run, window, LIMIT as usize).await;
        assert!(first.iter().all(Decision::allowed), "the first window passes its limit: {first:?}");
        window = limit.window();
        let second_window = first_window + 1;
        if next_window(window).await != second_window {
            window *= 2;
            continue;
        }
        let decisions = burst(&all, limit, &key, 2 * LIMIT as usize).await;
        // Every check of the burst ran at most this far into the window.
        let (now_index, elapsed) = position(window);
        if now_index != second_window {
            window *= 2;
            continue;
        }
        let passed = decisions.iter().filter(|d| d.allowed()).count() as u64;
        let still_covered = u128::from(LIMIT) * (window.as_nanos() - elapsed) / window.as_nanos();
        let bound = LIMIT - u64::try_from(still_covered).expect("at most LIMIT");
        assert!(
            passed <= bound,
            "{passed} passed {elapsed} ns into a {window:?} window; at most {bound} may"
        );
        assert_refusals(&decisions, limit);
        for _ in 0..4 {
            let decision = limit.check(&*all[0], &key).await.unwrap();
            let Some(wait) = decision.retry_after() else { return };
            assert!(!wait.is_zero() && wait <= window, "retry_after {wait:?}");
            tokio::time::sleep(wait).await;
        }
        panic!("a client following retry_after was refused 4 times in a row");
    }
    panic!("each of {ATTEMPTS} runs crossed a window boundary, up to {window:?}: the store is too slow");
}

/// Zero limits and windows are `InvalidArgument` on every store; a store
/// without counters or TTL says `Unsupported`, any other checks.
pub async fn rate_limit_rejects_bad_arguments(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let key = unique("rate-bad");
    let window = Duration::from_secs(60);
    for bad in [
        RateLimit::fixed_window(0, window),
        RateLimit::fixed_window(1, Duration::ZERO),
        RateLimit::sliding_window(0, window),
        RateLimit::sliding_window(1, Duration::ZERO),
    ] {
        expect_kind(bad.check(&*s, &key).await, ErrorKind::InvalidArgument, &format!("{bad:?}"));
    }
    let caps = s.capabilities();
    for good in [RateLimit::fixed_window(1, window), RateLimit::sliding_window(1, window)] {
        let result = good.check(&*s, &key).await;
        if caps.counters && caps.ttl.is_some() {
            assert!(result.expect("a valid limit").allowed());
        } else {
            expect_kind(result, ErrorKind::Unsupported, "no counters or no TTL");
        }
    }
}

async fn instances(factory: &impl Factory) -> Option<Vec<Arc<dyn StateStore>>> {
    let mut all = vec![store(factory).await?];
    for _ in 1..INSTANCES {
        all.push(store(factory).await.expect("another instance"));
    }
    Some(all)
}

/// `total` checks at once on a new key, spread over `stores`, all within one
/// window of `limit(window)` by the clock (else again, with a new key and a
/// window twice as long): the key, the limit, the window's index, decisions.
async fn burst_in_one_window(
    stores: &[Arc<dyn StateStore>],
    limit: impl Fn(Duration) -> RateLimit,
    mut window: Duration,
    total: usize,
) -> (String, RateLimit, u128, Vec<Decision>) {
    for _ in 0..ATTEMPTS {
        let (limit, key) = (limit(window), unique("rate"));
        // Start early in a window when the window is short.
        let before = match window <= Duration::from_secs(10) {
            true => next_window(window).await,
            false => position(window).0,
        };
        let decisions = burst(stores, limit, &key, total).await;
        if position(window).0 == before {
            return (key, limit, before, decisions);
        }
        window *= 2;
    }
    panic!("each of {ATTEMPTS} bursts crossed a window boundary, up to {window:?}: the store is too slow");
}

/// `total` checks of `key` at once, spread over `stores`.
async fn burst(stores: &[Arc<dyn StateStore>], limit: RateLimit, key: &str, total: usize) -> Vec<Decision> {
    let tasks = stores.iter().enumerate().map(|(i, s)| {
        let (s, key) = (s.clone(), key.to_owned());
        let share = total / stores.len() + usize::from(i < total % stores.len());
        tokio::spawn(async move { join_all((0..share).map(|_| limit.check(&*s, &key))).await })
    });
    let mut decisions = Vec::with_capacity(total);
    for task in join_all(tasks).await {
        for decision in task.expect("checks") {
            decisions.push(decision.expect("check"));
        }
    }
    decisions
}

/// Exactly `limit` passed, each with its own remaining count.
#[track_caller]
fn assert_exact(decisions: &[Decision], limit: RateLimit) {
    let mut remaining: Vec<u64> = decisions.iter().filter(|d| d.allowed()).map(Decision::remaining).collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..limit.limit()).collect::<Vec<_>>(), "exactly the limit passed");
    assert_refusals(decisions, limit);
}

#[track_caller]
fn assert_refusals(decisions: &[Decision], limit: RateLimit) {
    for d in decisions.iter().filter(|d| !d.allowed()) {
        let wait = d.retry_after().expect("a refusal says when to retry");
        assert!(!wait.is_zero() && wait <= limit.window(), "retry_after {wait:?} within the window");
        assert_eq!((d.remaining(), d.limit()), (0, limit.limit()));
    }
}

/// Which window of `window` the clock is in, and how far into it (ns).
fn position(window: Duration) -> (u128, u128) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("a clock after 1970").as_nanos();
    (now / window.as_nanos(), now % window.as_nanos())
}

/// Sleeps until the next window has begun (a few ms into it); its index.
async fn next_window(window: Duration) -> u128 {
    let (now, elapsed) = position(window);
    let left = u64::try_from(window.as_nanos() - elapsed).expect("a short window");
    tokio::time::sleep(Duration::from_nanos(left) + Duration::from_millis(5)).await;
    now + 1
}
