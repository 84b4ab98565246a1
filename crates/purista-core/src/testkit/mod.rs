//! The behaviour suite every store must pass, written once (feature `testkit`).
//!
//! Each case is a plain `pub async fn` taking a [`Factory`]; every call of
//! the factory opens a new instance of the store (its own connection, on the
//! same data), so cases can drive several instances at once. Cases live one
//! file per capability, and each is registered with the capabilities it
//! needs: run as a suite, a case the store does not claim them for is
//! reported as ignored with the reason, and one case checks that every
//! unclaimed capability fails with [`Unsupported`](crate::ErrorKind::Unsupported).
//! Keys are unique per run, so suites can share one live server.
//!
//! A test binary with `harness = false` runs the whole suite, one test per
//! case, with `purista_core::behaviour_suite!(store);` (or calls
//! [`main`] from its own `main`, after starting a server); a case can also
//! be run on its own:
//!
//! ```
//! use std::sync::Arc;
//! use purista_core::{DefaultStateStore, StateStore, StoreConfig, testkit};
//!
//! async fn store(config: StoreConfig) -> Option<Arc<dyn StateStore>> {
//!     // Return None when the server is missing, after saying so loudly.
//!     Some(Arc::new(DefaultStateStore::from_config(config)))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! testkit::etag(&store).await;
//! testkit::transaction_order(&store).await;
//! # }
//! ```

mod cases;
mod concurrency;
pub mod linearizability;
mod runner;

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

pub use cases::*;
pub use concurrency::{
    GrantRecord, LeaseHistory, Mix, Report, Workload, WriteRecord, bank, bank_with, check_fencing, counter,
    counter_with, lease, lease_unfenced, lease_with, linearizable, linearizable_with, rate_limit,
    rate_limit_with,
};
pub use runner::{Trial, main, main_with};

use crate::{StateStore, StoreConfig};

/// What a [`Factory`] returns.
pub type StoreFuture<'a> = Pin<Box<dyn Future<Output = Option<Arc<dyn StateStore>>> + Send + 'a>>;

/// Builds the store under test. `None` means the backend is not available
/// here (the factory reports why); the case then returns without checking.
pub trait Factory: Sync {
    /// A store with `config`.
    fn store(&self, config: StoreConfig) -> StoreFuture<'_>;
}

impl<F, Fut> Factory for F
where
    F: Fn(StoreConfig) -> Fut + Sync,
    Fut: Future<Output = Option<Arc<dyn StateStore>>> + Send + 'static,
{
    fn store(&self, config: StoreConfig) -> StoreFuture<'_> {
        Box::pin(self(config))
    }
}

/// Each store of `factory` behind a near cache of its own (default
/// options): a cached run of the suite, where the cases needing fresh reads
/// are skipped and the `cache` cases check the cache's rules.
pub fn cached<F: Factory>(factory: F) -> Cached<F> {
    Cached(factory)
}

/// What [`cached`] returns.
#[derive(Debug, Clone)]
pub struct Cached<F>(F);

impl<F: Factory> Factory for Cached<F> {
    fn store(&self, config: StoreConfig) -> StoreFuture<'_> {
        Box::pin(async move {
            let inner = self.0.store(config).await?;
            let name = inner.name().to_owned();
            match crate::CachedStore::new(inner, crate::CacheOptions::default()).await {
                Ok(cached) => Some(cached as Arc<dyn StateStore>),
                Err(e) => panic!("a near cache over {name}: {e}"),
            }
        })
    }
}

/// A name no other test, process or earlier run uses.
pub fn unique(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{name}-{}-{nanos:x}-{n}", std::process::id())
}

/// One test per behaviour case, as the `main` of a test binary declared
/// with `harness = false` (`[[test]] name = "..." harness = false` in
/// Cargo.toml), for a factory function
/// `async fn(StoreConfig) -> Option<Arc<dyn StateStore>>`. Cases the store's
/// capabilities exclude are reported as ignored, with the reason on stderr.
#[macro_export]
macro_rules! behaviour_suite {
    ($factory:path) => {
        fn main() -> ::std::process::ExitCode {
            $crate::testkit::main($factory)
        }
    };
}
