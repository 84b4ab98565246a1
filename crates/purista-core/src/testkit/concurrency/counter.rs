//! Counters under concurrency and faults: clients on instances of their own
//! increment one counter; every acknowledged increment must count exactly
//! once, and one whose outcome is unknown at most once.

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
use crate::testkit::{Factory, unique};

/// What the clients saw.
#[derive(Default)]
struct Seen {
    /// The sums acknowledged increments answered.
    sums: Mutex<Vec<i64>>,
    unknown: AtomicUsize,
    conflicts: AtomicUsize,
    unexpected: Mutex<Vec<String>>,
}

/// Runs increments of 1 from `workload.instances` clients while `fault`
/// runs, then reads the counter. Passes when the acknowledged increments
/// answered distinct sums (none lost, none applied twice), and the final
/// value counts every acknowledged increment and at most the unknown ones.
pub async fn counter_with(
    factory: &impl Factory,
    workload: Workload,
    fault: impl Future<Output = ()> + Send,
) -> Report {
    let (mut report, stores) = match begin("counter", factory, &workload).await {
        Ok(begun) => begun,
        Err(skipped) => return skipped,
    };
    if !stores[0].capabilities().counters {
        let why = format!("{} has no counters", report.store);
        return report.skip(why);
    }
    let key = unique("counter");
    let seen = Arc::new(Seen::default());
    let fault_over = Arc::new(AtomicBool::new(false));
    let clients = stores.iter().enumerate().map(|(id, store)| {
        let (store, seen, key) = (store.clone(), seen.clone(), key.clone());
        let mut rng = Rng::new(report.seed, id as u64);
        let mut pace = Pace::new(&workload, fault_over.clone());
        let timeout = workload.op_timeout;
        async move {
            while pace.next(&mut rng).await {
                match attempt(timeout, store.increment(&key, 1, None)).await {
                    Answer::Done(sum) => seen.sums.lock().push(sum),
                    Answer::Unknown => _ = seen.unknown.fetch_add(1, Ordering::Relaxed),
                    // Contention beyond the store's retries: not applied.
                    Answer::Conflict => _ = seen.conflicts.fetch_add(1, Ordering::Relaxed),
                    Answer::Failed(e) => {
                        seen.unexpected.lock().push(format!("client {id}: increment: {e:?}"))
                    }
                }
            }
        }
    });
    let started = Instant::now();
    drive(clients.collect(), fault, &fault_over).await;
    let last = read_back(&stores[0], &key, workload.op_timeout).await;
    report.run_time = started.elapsed();
    cleanup(&stores, std::slice::from_ref(&key)).await;

    let mut sums = std::mem::take(&mut *seen.sums.lock());
    let unknown = seen.unknown.load(Ordering::Relaxed);
    report.histories = 1;
    report.indeterminate = unknown;
    report.conflicts = seen.conflicts.load(Ordering::Relaxed);
    report.ops = sums.len() + unknown + report.conflicts;
    let checking = Instant::now();
    let mut found = std::mem::take(&mut *seen.unexpected.lock());
    sums.sort_unstable();
    if let Some(pair) = sums.windows(2).find(|w| w[0] == w[1]) {
        found.push(format!("two acknowledged increments answered the same sum {}: one was lost", pair[0]));
    }
    let acked = sums.len() as i64;
    match last {
        Err(why) => found.push(why),
        Ok(last) if last < acked || last > acked + unknown as i64 => found.push(format!(
            "the counter ends at {last}: {acked} acknowledged increments and {unknown} unknown ones"
        )),
        Ok(last) if sums.last().is_some_and(|&max| max > last) => {
            found.push(format!("an increment answered {}, above the final {last}", sums[sums.len() - 1]));
        }
        Ok(_) => {}
    }
    report.check_time = checking.elapsed();
    finish(report, found)
}

/// The counter's final value, retried while a fault's aftermath lasts.
async fn read_back(store: &Arc<dyn crate::StateStore>, key: &str, timeout: Duration) -> Result<i64, String> {
    let settled = Instant::now() + SETTLE;
    loop {
        match attempt(timeout, crate::StateStoreExt::get::<i64>(&**store, key)).await {
            Answer::Done(value) => return Ok(value.unwrap_or(0)),
            Answer::Failed(e) => return Err(format!("final read: {e:?}")),
            _ if Instant::now() >= settled => return Err("final read: no answer after the fault".into()),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}
