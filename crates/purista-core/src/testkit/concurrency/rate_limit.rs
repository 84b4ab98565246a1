//! Rate limits under concurrency and faults: clients on instances of their
//! own check one fixed-window and one sliding-window limit as fast as they
//! can; no window may allow more than the limit, whatever the fault did.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use parking_lot::Mutex;

use super::{drive::*, workload::*, *};
use crate::{
    Capability, RateLimit,
    testkit::{Factory, unique},
};

/// Short windows, so that a run spans many and faults cut through some.
const WINDOW: Duration = Duration::from_secs(1);
const LIMIT: u64 = 20;

/// An allowed check: the windows its call began and ended in.
type Allowed = (u64, u64);

#[derive(Default)]
struct Seen {
    /// Per limit (fixed, sliding): the allowed checks.
    allowed: [Mutex<Vec<Allowed>>; 2],
    refused: AtomicUsize,
    unknown: AtomicUsize,
    unexpected: Mutex<Vec<String>>,
}

/// The window of `at`, numbered as the limits number them (from the epoch).
fn window(at: SystemTime) -> u64 {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    (since.as_nanos() / WINDOW.as_nanos()) as u64
}

/// Runs checks of a fixed-window and a sliding-window limit (each `LIMIT`
/// per `WINDOW`) from `workload.instances` clients while `fault` runs.
/// Passes when no window allowed more than `LIMIT` checks of either limit
/// (counting those whose call began and ended in that window; an unknown
/// outcome is no allowance), and some were allowed.
pub async fn rate_limit_with(
    factory: &impl Factory,
    workload: Workload,
    fault: impl Future<Output = ()> + Send,
) -> Report {
    let (mut report, stores) = match begin("rate_limit", factory, &workload).await {
        Ok(begun) => begun,
        Err(skipped) => return skipped,
    };
    let caps = stores[0].capabilities();
    if let Err(e) = caps.require(&report.store, "a rate limit", &[Capability::Counters, Capability::Ttl]) {
        return report.skip(e.to_string());
    }
    let limits = [RateLimit::fixed_window(LIMIT, WINDOW), RateLimit::sliding_window(LIMIT, WINDOW)];
    let key = unique("rate");
    let seen = Arc::new(Seen::default());
    let fault_over = Arc::new(AtomicBool::new(false));
    let clients = stores.iter().enumerate().map(|(id, store)| {
        let (store, seen, key) = (store.clone(), seen.clone(), key.clone());
        let mut rng = Rng::new(report.seed, id as u64);
        let mut pace = Pace::new(&workload, fault_over.clone());
        let timeout = workload.op_timeout;
        async move {
            while pace.next(&mut rng).await {
                let which = usize::from(rng.coin());
                let began = SystemTime::now();
                match attempt(timeout, limits[which].check(&*store, &key)).await {
                    Answer::Done(d) if d.allowed() => {
                        seen.allowed[which].lock().push((window(began), window(SystemTime::now())))
                    }
                    // Refused; or contention beyond the store's retries: not counted.
                    Answer::Done(_) | Answer::Conflict => _ = seen.refused.fetch_add(1, Ordering::Relaxed),
                    Answer::Unknown => _ = seen.unknown.fetch_add(1, Ordering::Relaxed),
                    Answer::Failed(e) => seen.unexpected.lock().push(format!("client {id}: check: {e:?}")),
                }
            }
        }
    });
    let started = Instant::now();
    drive(clients.collect(), fault, &fault_over).await;
    report.run_time = started.elapsed();
    cleanup(&stores, &[]).await;

    let checking = Instant::now();
    let mut found = std::mem::take(&mut *seen.unexpected.lock());
    let mut allowed = 0;
    for (limit, name) in seen.allowed.iter().zip(["fixed", "sliding"]) {
        let limit = limit.lock();
        allowed += limit.len();
        let mut per_window: BTreeMap<u64, u64> = BTreeMap::new();
        for &(began, ended) in limit.iter() {
            // A call across a boundary counted in one of two windows: in
            // neither here, so that a pass is never a false alarm.
            if began == ended {
                *per_window.entry(began).or_default() += 1;
            }
        }
        let most = per_window.values().max().copied().unwrap_or(0);
        eprintln!(
            "[purista-testkit] rate_limit {name}: {} allowed over {} windows, at most {most} in one (limit {LIMIT})",
            limit.len(),
            per_window.len()
        );
        for (window, n) in per_window.iter().filter(|(_, n)| **n > LIMIT) {
            found.push(format!("the {name} window {window} allowed {n} checks, over its limit {LIMIT}"));
        }
    }
    if allowed == 0 {
        found.push("no check was ever allowed".to_owned());
    }
    report.histories = 2;
    report.indeterminate = seen.unknown.load(Ordering::Relaxed);
    report.ops = allowed + seen.refused.load(Ordering::Relaxed) + report.indeterminate;
    report.check_time = checking.elapsed();
    finish(report, found)
}
