//! Decisions on a clock the test sets; the behaviour suite checks the same
//! on every store, with real time and many instances.

use std::{collections::HashMap, sync::Arc, time::Duration};

use parking_lot::Mutex;

use super::{Decision, RateLimit, window};
use crate::{
    Capabilities, DefaultStateStore, ETag, ErrorKind, HandlerError, Json, PutOptions, Result, StateStore,
    StoreConfig, backend::Backend,
};

const W: Duration = Duration::from_secs(10);
const WN: u128 = W.as_nanos();

fn at(window_index: u64, elapsed: Duration) -> Duration {
    W * u32::try_from(window_index).unwrap() + elapsed
}

#[test]
fn fixed_window_arithmetic() {
    assert_eq!(window::fixed(3, WN, 0, 1), Decision::allow(3, 2));
    assert_eq!(window::fixed(3, WN, 0, 3), Decision::allow(3, 0));
    assert_eq!(window::fixed(3, WN, 0, 4), Decision::refuse(3, W));
    assert_eq!(window::fixed(3, WN, WN - 1, 9), Decision::refuse(3, Duration::from_nanos(1)));
    assert_eq!(window::fixed(3, WN, 0, -5), Decision::allow(3, 3), "below zero counts as unused");
}

#[test]
fn sliding_window_arithmetic() {
    // A full previous window weighs fully at the start of the next one; a
    // nanosecond later it weighs one request less.
    assert_eq!(window::sliding(10, WN, 0, 10, 1), Decision::refuse(10, Duration::from_nanos(1)));
    assert_eq!(window::sliding(10, WN, 1, 10, 1), Decision::allow(10, 0));
    // Halfway, half of it: 5 more, then the 6th waits until the weight drops to 4.
    assert_eq!(window::sliding(10, WN, WN / 2, 10, 5), Decision::allow(10, 0));
    assert_eq!(window::sliding(10, WN, WN / 2, 10, 6), Decision::refuse(10, Duration::from_nanos(1)));
    assert_eq!(window::sliding(10, WN, WN / 2, 10, 2), Decision::allow(10, 3));
    // 3 others and this one in the current window, the previous one full:
    // wait until it weighs 0.
    assert_eq!(window::sliding(4, WN, WN / 2, 4, 4), Decision::refuse(4, W / 4 + Duration::from_nanos(1)));
    // The current window full: its end, and the first nanosecond after it
    // (capped at one window).
    assert_eq!(
        window::sliding(10, WN, WN / 4, 0, 11),
        Decision::refuse(10, W * 3 / 4 + Duration::from_nanos(1))
    );
    assert_eq!(window::sliding(10, WN, 0, 0, 11), Decision::refuse(10, W));
    assert_eq!(window::sliding(1, WN, 0, 0, 2), Decision::refuse(1, W));
}

#[test]
fn window_labels_are_canonical() {
    assert_eq!(window::label(Duration::from_secs(60)), "60s");
    assert_eq!(window::label(Duration::from_millis(60_000)), "60s");
    assert_eq!(window::label(Duration::from_millis(1500)), "1500ms");
    assert_eq!(window::label(Duration::from_micros(3)), "3us");
    assert_eq!(window::label(Duration::from_nanos(7)), "7ns");
}

#[tokio::test]
async fn fixed_window_counts_and_resets() {
    let store = DefaultStateStore::new();
    let limit = RateLimit::fixed_window(3, W);
    let now = at(100, Duration::from_secs(2));
    for remaining in [2, 1, 0] {
        assert_eq!(limit.check_at(&store, "k", now).await.unwrap(), Decision::allow(3, remaining));
    }
    let refused = limit.check_at(&store, "k", now).await.unwrap();
    assert_eq!(refused, Decision::refuse(3, Duration::from_secs(8)));
    assert_eq!(limit.check_at(&store, "other", now).await.unwrap(), Decision::allow(3, 2), "own budget");
    let next = at(101, Duration::ZERO);
    assert_eq!(limit.check_at(&store, "k", next).await.unwrap(), Decision::allow(3, 2), "a new window");
    assert_eq!(store.get::<i64>("k:fixed-10s:100").await.unwrap(), Some(4), "refused checks count");
    let entry = StateStore::get_entry(&store, "k:fixed-10s:101").await.unwrap().expect("counter");
    assert!(entry.expires_at.is_some(), "window counters expire");
}

#[tokio::test]
async fn sliding_window_weighs_the_previous_window() {
    let store = DefaultStateStore::new();
    let limit = RateLimit::sliding_window(4, W);
    for _ in 0..4 {
        assert!(limit.check_at(&store, "k", at(100, Duration::ZERO)).await.unwrap().allowed());
    }
    assert!(!limit.check_at(&store, "k", at(100, Duration::from_secs(9))).await.unwrap().allowed());
    assert_eq!(store.get::<i64>("k:sliding-10s:100").await.unwrap(), Some(4), "refused is given back");
    // Halfway into the next window, half of the previous one still counts.
    let half = at(101, Duration::from_secs(5));
    assert_eq!(limit.check_at(&store, "k", half).await.unwrap(), Decision::allow(4, 1));
    assert_eq!(limit.check_at(&store, "k", half).await.unwrap(), Decision::allow(4, 0));
    let refused = limit.check_at(&store, "k", half).await.unwrap();
    assert_eq!(refused.retry_after(), Some(Duration::from_nanos(1)), "until the weight drops to 1");
    let later = at(101, Duration::from_millis(7500));
    assert_eq!(limit.check_at(&store, "k", later).await.unwrap(), Decision::allow(4, 0));
    // Window 0 has no previous window.
    assert!(limit.check_at(&store, "k", Duration::from_secs(1)).await.unwrap().allowed());
}

#[tokio::test]
async fn bad_arguments_are_typed_errors() {
    let store = DefaultStateStore::new();
    let cases = [
        (RateLimit::fixed_window(0, W), "k", ErrorKind::InvalidArgument),
        (RateLimit::sliding_window(0, W), "k", ErrorKind::InvalidArgument),
        (RateLimit::fixed_window(1, Duration::ZERO), "k", ErrorKind::InvalidArgument),
        (RateLimit::sliding_window(1, Duration::ZERO), "k", ErrorKind::InvalidArgument),
        (RateLimit::fixed_window(1, Duration::MAX), "k", ErrorKind::InvalidArgument),
        (RateLimit::sliding_window(1, crate::backend::MAX_TTL / 2), "k", ErrorKind::InvalidArgument),
        (RateLimit::fixed_window(1, W), "", ErrorKind::InvalidKey),
    ];
    for (limit, key, kind) in cases {
        let err = limit.check(&store, key).await.expect_err("refused");
        assert_eq!(err.kind(), kind, "{limit:?} {key:?}: {err}");
    }
    assert!(store.is_empty(), "nothing written");
}

/// A store with only what its capabilities say.
#[derive(Debug, Clone, Default)]
struct Bare {
    data: Arc<Mutex<HashMap<String, Json>>>,
    config: StoreConfig,
    caps: Capabilities,
}

impl Backend for Bare {
    fn name(&self) -> &str {
        "Bare"
    }
    fn config(&self) -> &StoreConfig {
        &self.config
    }
    fn with_config(&self, config: StoreConfig) -> Self {
        Bare { config, ..self.clone() }
    }
    fn capabilities(&self) -> Capabilities {
        self.caps
    }
    async fn get_state(&self, keys: &[&str]) -> Result<Vec<Option<Json>>> {
        let data = self.data.lock();
        Ok(keys.iter().map(|k| data.get(*k).cloned()).collect())
    }
    async fn put(&self, key: &str, value: Json, _options: &PutOptions) -> Result<Option<ETag>> {
        self.data.lock().insert(key.to_owned(), value);
        Ok(None)
    }
    async fn remove(&self, key: &str, _etag: Option<&ETag>) -> Result<()> {
        self.data.lock().remove(key);
        Ok(())
    }
}

#[tokio::test]
async fn stores_without_counters_or_ttl_are_unsupported() {
    let no_counters = Capabilities { ttl: Some(Duration::from_secs(1)), ..Capabilities::default() };
    let no_ttl = Capabilities { counters: true, ..Capabilities::default() };
    for (caps, named) in [(no_counters, "counters"), (no_ttl, "TTL")] {
        let store = Bare { caps, ..Bare::default() };
        for limit in [RateLimit::fixed_window(1, W), RateLimit::sliding_window(1, W)] {
            let err = limit.check(&store, "k").await.expect_err("unsupported");
            assert_eq!(err.kind(), ErrorKind::Unsupported);
            assert!(err.message().contains(named), "{err}");
        }
        assert!(store.data.lock().is_empty());
    }
}

#[test]
fn refusals_become_429() {
    let refused = Decision::refuse(5, Duration::from_micros(1_200_001)).into_result().unwrap_err();
    assert_eq!(refused.retry_after_secs(), 2);
    assert_eq!(refused.to_string(), "rate limit exceeded (5 per window); retry after 1.201s");
    let err = HandlerError::from(refused);
    assert_eq!((err.status(), err.message()), (429, refused.to_string().as_str()));
    assert_eq!(Decision::allow(5, 4).into_result(), Ok(Decision::allow(5, 4)));
}
