//! The concurrency checks on the reference store, and on a store broken on
//! purpose, which they must catch.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use purista_core::{
    CacheOptions, CachedStore, Capabilities, DefaultStateStore, ETag, Entry, ErrorKind, Json, Op, PutMode,
    PutOptions, Result, StateStore, StoreConfig, WatchStream,
    backend::Backend,
    testkit::{self, Mix, Workload},
};

/// Another handle on one memory store per factory.
fn memory() -> impl Fn(StoreConfig) -> std::future::Ready<Option<Arc<dyn StateStore>>> + Sync {
    let shared = DefaultStateStore::new();
    move |config| std::future::ready(Some(Arc::new(shared.with_config(config)) as Arc<dyn StateStore>))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_is_linearizable() {
    testkit::linearizable(&memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_keeps_the_bank_total() {
    testkit::bank(&memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_is_linearizable_under_a_heavier_workload() {
    let workload = Workload { instances: 8, keys: 4, ops_per_client: 300, ..Workload::default() };
    let report = testkit::linearizable_with(&memory(), workload, async {}).await;
    report.assert_passed();
    assert!(report.conflicts > 0 && report.ops >= 8 * 300, "{report}");
}

/// A store that forgets its ETag check now and then: every `every`th
/// update- or remove-if-ETag that the memory store refuses goes through
/// anyway (outside transactions). It also counts writes. A deaf one's
/// watch never reports anything.
#[derive(Debug, Clone)]
struct Forgetful {
    inner: DefaultStateStore,
    every: Option<u64>,
    deaf: bool,
    refused: Arc<AtomicU64>,
    forgot: Arc<AtomicU64>,
    writes: Arc<AtomicU64>,
}

impl Forgetful {
    fn new(every: Option<u64>) -> Self {
        let (refused, forgot, writes) = Default::default();
        Forgetful { inner: DefaultStateStore::new(), every, deaf: false, refused, forgot, writes }
    }

    /// A factory of handles on this store.
    fn factory(&self) -> impl Fn(StoreConfig) -> std::future::Ready<Option<Arc<dyn StateStore>>> + Sync {
        let store = self.clone();
        move |config| std::future::ready(Some(Arc::new(store.with_config(config)) as Arc<dyn StateStore>))
    }

    /// Whether to let this refused write through.
    fn forget(&self) -> bool {
        let Some(every) = self.every else { return false };
        let forget = self.refused.fetch_add(1, Ordering::Relaxed) % every == every - 1;
        if forget {
            self.forgot.fetch_add(1, Ordering::Relaxed);
        }
        forget
    }
}

impl Backend for Forgetful {
    fn name(&self) -> &str {
        "Forgetful"
    }
    fn config(&self) -> &StoreConfig {
        Backend::config(&self.inner)
    }
    fn with_config(&self, config: StoreConfig) -> Self {
        Forgetful { inner: self.inner.with_config(config), ..self.clone() }
    }
    fn capabilities(&self) -> Capabilities {
        Backend::capabilities(&self.inner)
    }
    async fn get_state(&self, keys: &[&str]) -> Result<Vec<Option<Json>>> {
        Backend::get_state(&self.inner, keys).await
    }
    async fn get_entry(&self, key: &str) -> Result<Option<Entry>> {
        let entry = Backend::get_entry(&self.inner, key).await;
        // As a network store would, let others run between a read and the
        // write it leads to.
        tokio::task::yield_now().await;
        entry
    }
    async fn put(&self, key: &str, value: Json, options: &PutOptions) -> Result<Option<ETag>> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        match Backend::put(&self.inner, key, value.clone(), options).await {
            Err(e) if e.kind() == ErrorKind::Conflict && matches!(options.mode, PutMode::Update(_)) => {
                if !self.forget() {
                    return Err(e);
                }
                let upsert = PutOptions { mode: PutMode::Upsert, ttl: options.ttl };
                Backend::put(&self.inner, key, value, &upsert).await
            }
            written => written,
        }
    }
    async fn remove(&self, key: &str, etag: Option<&ETag>) -> Result<()> {
        match Backend::remove(&self.inner, key, etag).await {
            Err(e) if e.kind() == ErrorKind::Conflict && self.forget() => {
                Backend::remove(&self.inner, key, None).await
            }
            deleted => deleted,
        }
    }
    async fn transaction(&self, ops: Vec<Op>) -> Result<()> {
        let puts = ops.iter().filter(|op| matches!(op, Op::Put { .. })).count();
        self.writes.fetch_add(puts as u64, Ordering::Relaxed);
        Backend::transaction(&self.inner, ops).await
    }
    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        Backend::list_keys(&self.inner, prefix).await
    }
    async fn watch(&self, prefix: &str) -> Result<WatchStream> {
        if self.deaf {
            return Ok(Box::pin(futures_util::stream::pending()));
        }
        Backend::watch(&self.inner, prefix).await
    }
}

/// Each instance its own near cache over one store.
fn cached(store: &Forgetful, feed_delay: Duration) -> impl testkit::Factory + use<> {
    let store = store.clone();
    move |config: StoreConfig| {
        let inner: Arc<dyn StateStore> = Arc::new(store.with_config(config));
        async move {
            let options = CacheOptions::default().max_feed_delay(feed_delay);
            Some(CachedStore::new(inner, options).await.expect("a near cache") as Arc<dyn StateStore>)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_cache_is_checked_against_its_declared_staleness() {
    let report = testkit::linearizable_with(
        &cached(&Forgetful::new(None), Duration::from_secs(1)),
        Workload::default(),
        async {},
    )
    .await;
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_cache_that_misses_other_instances_writes_is_caught() {
    // Its feed never reports, so each instance keeps serving what it cached
    // while others write, for longer than the 1 µs it declares. Mostly
    // plain reads, so that an instance's own writes seldom refresh it.
    let deaf = Forgetful { deaf: true, ..Forgetful::new(None) };
    let mix = Mix { get: 8, get_state: 2, upsert: 1, create: 0, update: 0, remove: 0, remove_if: 0 };
    let workload = Workload { ops_per_client: 300, mix, ..Workload::default() };
    let report =
        testkit::linearizable_with(&cached(&deaf, Duration::from_micros(1)), workload, async {}).await;
    let violation = report.violation.as_deref().expect("stale reads past the bound are caught");
    assert!(violation.contains("not linearizable"), "{violation}");
    eprintln!("caught, as expected:\n{violation}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_forgets_one_etag_check_in_a_hundred_is_caught() {
    let store = Forgetful::new(Some(100));
    // Mostly conditional writes, so that a few hundred are refused.
    let mix = Mix { get: 2, get_state: 1, upsert: 1, create: 1, update: 4, remove: 0, remove_if: 2 };
    let workload = Workload { instances: 6, keys: 3, ops_per_client: 200, mix, ..Workload::default() };
    let report = testkit::linearizable_with(&store.factory(), workload, async {}).await;
    let forgot = store.forgot.load(Ordering::Relaxed);
    assert!(forgot >= 2, "the workload reached the broken path {forgot} times: {report}");
    let violation = report.violation.as_deref().expect("the forgotten ETag checks are caught");
    assert!(violation.contains("not linearizable"), "{violation}");
    eprintln!("caught, as expected ({forgot} forgotten checks):\n{violation}");
}

/// The fault runs alongside the clients, who go on until it ends: here it
/// ends only once they wrote far more than their share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_run_until_the_fault_is_over() {
    let store = Forgetful::new(None);
    let workload = Workload { instances: 2, ops_per_client: 10, ..Workload::default() };
    let writes = store.writes.clone();
    let fault = async move {
        for _ in 0..6000 {
            if writes.load(Ordering::Relaxed) >= 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let report = testkit::linearizable_with(&store.factory(), workload, fault).await;
    report.assert_passed();
    assert!(store.writes.load(Ordering::Relaxed) >= 200, "clients stopped while the fault ran: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_counts_every_increment() {
    testkit::counter(&memory()).await;
}

/// Increments by compare-and-swap on the forgetful store: an update that
/// goes through despite a stale ETag loses another increment, which the
/// counter check must see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_on_a_forgetful_store_is_caught() {
    let store = Forgetful::new(Some(20));
    let workload = Workload { instances: 6, ops_per_client: 100, ..Workload::default() };
    let report = testkit::counter_with(&store.factory(), workload, async {}).await;
    let forgot = store.forgot.load(Ordering::Relaxed);
    assert!(forgot >= 1, "the workload reached the broken path {forgot} times: {report}");
    let violation = report.violation.as_deref().expect("the lost increments are caught");
    assert!(violation.contains("same sum") || violation.contains("ends at"), "{violation}");
    eprintln!("caught, as expected ({forgot} forgotten checks):\n{violation}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_rate_limits_hold() {
    testkit::rate_limit(&memory()).await;
}

/// Rate limits count with increments: on the forgetful store some are lost,
/// and a window lets more than its limit through, which the check must see.
/// A lost increment lets a check through only if it is lost before the
/// window's count reaches the limit; on a loaded machine a run's losses
/// once all came later (CI, 2026-12-08). So up to ten runs, each on a store
/// and key of its own, until one is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_on_a_forgetful_store_is_caught() {
    for run in 1..=10 {
        // Every refused update goes through: any race under the limit counts.
        let store = Forgetful::new(Some(1));
        let workload = Workload { instances: 6, ops_per_client: 100, ..Workload::default() };
        let report = testkit::rate_limit_with(&store.factory(), workload, async {}).await;
        let forgot = store.forgot.load(Ordering::Relaxed);
        assert!(forgot >= 1, "the workload reached the broken path {forgot} times: {report}");
        if let Some(violation) = report.violation.as_deref() {
            assert!(violation.contains("over its limit"), "{violation}");
            eprintln!("caught in run {run}, as expected ({forgot} forgotten checks):\n{violation}");
            return;
        }
        eprintln!("run {run}: {forgot} forgotten checks, none before the limit was reached: {report}");
    }
    panic!("ten runs on the forgetful store and no window over its limit was caught");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_fences_every_lease() {
    testkit::lease(&memory()).await;
}

/// A lock whose fenced writes skip the fence: a holder that paused past its
/// TTL writes after the next holder did, which the lease check must see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_without_fencing_is_caught() {
    let workload = Workload { instances: 4, ops_per_client: 400, ..Workload::default() };
    let report = testkit::lease_unfenced(&memory(), workload).await;
    let violation = report.violation.as_deref().expect("the stale writes are caught");
    assert!(violation.contains("stale holder's fenced write"), "{violation}");
    eprintln!("caught, as expected:\n{violation}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_counts_8_instances_by_1000_increments() {
    let workload = Workload { instances: 8, ops_per_client: 1000, ..Workload::default() };
    testkit::counter_with(&memory(), workload, async {}).await.assert_passed();
}
