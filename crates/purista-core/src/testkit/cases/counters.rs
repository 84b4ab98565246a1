//! Counters: `increment` is atomic across instances, typed, and keeps expiry.

use std::time::Duration;

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
    const INSTANCES: usize = 8;
    const EACH: i64 = 125;
    let Some(first) = store(factory).await else { return };
    let key = unique("counter-shared");
    let mut tasks = Vec::new();
    for _ in 0..INSTANCES {
        let Some(s) = store(factory).await else { return };
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..EACH {
                seen.push(s.increment(&key, 1, None).await.expect("increment"));
            }
            seen
        }));
    }
    let mut seen = Vec::new();
    for task in tasks {
        seen.extend(task.await.expect("increments"));
    }
    let total = INSTANCES as i64 * EACH;
    assert_eq!(first.get::<i64>(&key).await.unwrap(), Some(total));
    // Each increment saw a sum of its own: none was lost or applied twice.
    seen.sort_unstable();
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());
    first.remove_state(&key).await.unwrap();
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
