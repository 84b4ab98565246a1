//! Counters: `increment` is atomic across instances, typed, and keeps expiry.

use std::{sync::Arc, time::Duration};

use serde_json::json;

use super::support::*;
use crate::{
    ErrorKind, StateStoreExt,
    testkit::{Factory, unique},
};

/// A missing counter starts at 0; sums, negative deltas; a value that is not
/// an i64, or a sum that overflows, is `InvalidValue` and changes nothing.
pub async fn counter_basics(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let key = unique("counter");
    assert_eq!(s.increment(&key, 5, None).await.unwrap(), 5);
    assert_eq!(s.increment(&key, -7, None).await.unwrap(), -2);
    assert_eq!(raw(&*s, &key).await, Some(json!(-2)), "stored as a plain JSON number");
    if s.capabilities().etag {
        let before = etag_of(&*s, &key).await;
        s.increment(&key, 0, None).await.unwrap();
        assert_ne!(etag_of(&*s, &key).await, before, "every increment changes the ETag");
    }
    s.set(&key, &i64::MAX).await.unwrap();
    let err = expect_kind(s.increment(&key, 1, None).await, ErrorKind::InvalidValue, "overflow");
    assert_eq!(err.key(), Some(key.as_str()));
    assert_eq!(raw(&*s, &key).await, Some(json!(i64::MAX)));
    for not_a_counter in [json!("7"), json!(1.5), json!(1e3), json!(-0.0), json!({"n": 1}), json!(null)] {
        s.set(&key, &not_a_counter).await.unwrap();
        let err = expect_kind(s.increment(&key, 1, None).await, ErrorKind::InvalidValue, "not a counter");
        assert_eq!(err.key(), Some(key.as_str()));
        assert_eq!(raw(&*s, &key).await, Some(not_a_counter), "unchanged");
    }
    s.remove_state(&key).await.unwrap();
}

/// Every increment from several instances at once counts, exactly: 8
/// instances × 125 increments of one counter (8 × 1,000 runs in the
/// `counter` check on memory and Redis: compare-and-swap stores take a
/// minute for that under load).
pub async fn counter_concurrent(factory: &impl Factory) {
    counts_exactly(factory, "counter-shared", 8, 1, 125).await;
}

/// Many tasks of each instance increment one counter at once (a store may
/// send them as one): every increment still counts exactly once and answers
/// a sum of its own. 2 instances × 32 tasks × 25 increments.
pub async fn counter_tasks_of_one_instance(factory: &impl Factory) {
    counts_exactly(factory, "counter-tasks", 2, 32, 25).await;
}

/// `tasks` tasks on each of `instances` instances make `each` increments of
/// 1 of one counter: it ends at their number, and each answered a sum of
/// its own (none was lost or applied twice).
async fn counts_exactly(factory: &impl Factory, name: &str, instances: usize, tasks: usize, each: i64) {
    let key = unique(name);
    let mut running = Vec::new();
    for _ in 0..instances {
        let Some(s) = store(factory).await else { return };
        for _ in 0..tasks {
            let (s, key) = (s.clone(), key.clone());
            running.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..each {
                    seen.push(s.increment(&key, 1, None).await.expect("increment"));
                }
                seen
            }));
        }
    }
    let mut seen = Vec::new();
    for task in running {
        seen.extend(task.await.expect("increments"));
    }
    let total = (instances * tasks) as i64 * each;
    let Some(s) = store(factory).await else { return };
    assert_eq!(s.get::<i64>(&key).await.unwrap(), Some(total));
    seen.sort_unstable();
    assert_eq!(seen, (1..=total).collect::<Vec<_>>(), "each increment saw a sum of its own");
    s.remove_state(&key).await.unwrap();
}

/// Concurrent increments that cannot all fit: exactly those that would
/// overflow alone fail, whatever went to the server together; a value that
/// is no counter fails them all and stays.
pub async fn counter_refusals_per_increment(factory: &impl Factory) {
    const TASKS: i64 = 20;
    let Some(s) = store(factory).await else { return };
    let key = unique("counter-full");
    s.set(&key, &(i64::MAX - TASKS / 2)).await.unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(TASKS as usize));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (s, key, start) = (s.clone(), key.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                s.increment(&key, 1, None).await
            })
        })
        .collect();
    let (mut sums, mut refused) = (Vec::new(), 0);
    for task in tasks {
        match task.await.expect("increment") {
            Ok(sum) => sums.push(sum),
            Err(e) => {
                assert_eq!((e.kind(), e.key()), (ErrorKind::InvalidValue, Some(key.as_str())), "{e}");
                refused += 1;
            }
        }
    }
    sums.sort_unstable();
    assert_eq!(sums, ((i64::MAX - TASKS / 2 + 1)..=i64::MAX).collect::<Vec<_>>());
    assert_eq!(refused, TASKS / 2);
    assert_eq!(s.get::<i64>(&key).await.unwrap(), Some(i64::MAX));

    s.set(&key, &"seven").await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (s, key) = (s.clone(), key.clone());
            tokio::spawn(async move { s.increment(&key, 1, None).await })
        })
        .collect();
    for task in tasks {
        expect_kind(task.await.expect("increment"), ErrorKind::InvalidValue, "not a counter");
    }
    assert_eq!(raw(&*s, &key).await, Some(json!("seven")), "unchanged");
    s.remove_state(&key).await.unwrap();
}

/// Callers that stop waiting (a timeout) among others that wait: the others
/// all get their sums, and the counter holds every answered increment plus
/// at most the abandoned ones.
pub async fn counter_cancelled_callers(factory: &impl Factory) {
    const TASKS: usize = 64;
    let Some(s) = store(factory).await else { return };
    let key = unique("counter-cancel");
    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let (s, key, start) = (s.clone(), key.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let mut answered = Vec::new();
                for round in 0..10 {
                    let call = s.increment(&key, 1, None);
                    if (i + round) % 2 == 0 {
                        // Gone after its first poll, or soon after.
                        let wait = Duration::from_micros(50 * (i as u64 % 4));
                        if let Ok(answer) = tokio::time::timeout(wait, call).await {
                            answered.push(answer.expect("increment"));
                        }
                    } else {
                        answered.push(call.await.expect("increment beside cancelled ones"));
                    }
                }
                answered
            })
        })
        .collect();
    let all = async {
        let mut answered = Vec::new();
        for task in tasks {
            answered.extend(task.await.expect("increments"));
        }
        answered
    };
    let mut answered = tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("increments beside cancelled ones finish within 60 s");
    let value = s.get::<i64>(&key).await.unwrap().unwrap_or(0);
    let tries = (TASKS * 10) as i64;
    assert!(
        value >= answered.len() as i64 && value <= tries,
        "{value} after {} answered of {tries}",
        answered.len()
    );
    let count = answered.len();
    answered.sort_unstable();
    answered.dedup();
    assert_eq!(answered.len(), count, "each answered increment saw a sum of its own");
    assert!(answered.iter().all(|&sum| 1 <= sum && sum <= value), "sums within 1..={value}");
    s.remove_state(&key).await.unwrap();
}

/// The TTL applies when the counter is created; later increments keep the
/// expiry (to within half a TTL step each, on stores with whole-second
/// TTLs), so a window ends when its first TTL says.
pub async fn counter_ttl(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let step = s.capabilities().ttl.expect("the table runs this case only with TTL");
    let ttl = step.max(Duration::from_secs(1)) * 2;
    let key = unique("counter-ttl");
    let created = std::time::Instant::now();
    assert_eq!(s.increment(&key, 1, Some(ttl)).await.unwrap(), 1);
    let first = s.get_entry(&key).await.unwrap().expect("entry").expires_at.expect("an expiry");
    // Off the half-step tie, where a whole-second TTL could round either way.
    tokio::time::sleep(step.min(ttl / 4) * 3 / 10).await;
    assert_eq!(s.increment(&key, 1, Some(ttl * 10)).await.unwrap(), 2);
    // Each increment moves the expiry by at most half a TTL step (not at all
    // where TTLs are fine-grained): a burst neither shrinks it step by step
    // nor takes the later TTL, and it never passes what has elapsed.
    // Dapr reports expiries in whole seconds: allow for that much error.
    let whole = first.duration_since(std::time::UNIX_EPOCH).is_ok_and(|t| t.subsec_nanos() == 0);
    let precision = if whole { Duration::from_secs(1) } else { Duration::ZERO };
    let slack = step / 2 + precision + Duration::from_millis(50);
    let mut last = first;
    for _ in 0..10 {
        s.increment(&key, 1, Some(ttl * 10)).await.unwrap();
        let now = s.get_entry(&key).await.unwrap().expect("entry").expires_at.expect("still an expiry");
        assert!(
            now <= last + slack && now + slack >= last,
            "moved by more than half a step: {now:?} vs {last:?}"
        );
        last = now;
    }
    let elapsed = created.elapsed();
    assert!(
        last <= first + elapsed + precision + Duration::from_millis(50),
        "extended: {last:?} vs {first:?}"
    );
    assert!(last + slack >= first, "shortened: {last:?} vs {first:?}");
    tokio::time::sleep(ttl + step).await;
    let deadline = std::time::Instant::now() + ttl * 3;
    while raw(&*s, &key).await.is_some() {
        assert!(std::time::Instant::now() < deadline, "the counter outlived its first TTL");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.increment(&key, 1, None).await.unwrap(), 1, "a new window starts at 0");
    s.remove_state(&key).await.unwrap();
}
