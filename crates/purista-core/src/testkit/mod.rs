//! The behaviour suite every store must pass, written once (feature `testkit`).
//!
//! Each case is a plain `pub async fn` taking a [`Factory`] that builds a
//! store for a given [`StoreConfig`]. A case runs what the store's
//! [`Capabilities`](crate::Capabilities) claim, and checks that what they do
//! not claim fails with [`Unsupported`](crate::ErrorKind::Unsupported). Keys
//! are unique per run, so suites can share one live server and run in
//! parallel.
//!
//! In a test file, `purista_core::behaviour_suite!(store);` turns every case
//! into a `#[tokio::test]`; a case can also be run on its own:
//!
//! ```
//! use std::sync::Arc;
//! use purista_core::{DefaultStateStore, StateStore, StoreConfig, testkit};
//!
//! async fn store(config: StoreConfig) -> Option<Arc<dyn StateStore>> {
//!     // Return None when the server is missing, after saying so loudly.
//!     Some(Arc::new(DefaultStateStore::with_config(config)))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! testkit::etag(&store).await;
//! testkit::transaction_order(&store).await;
//! # }
//! ```

mod cases;
mod watch;

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
pub use watch::*;

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

/// A name no other test, process or earlier run uses.
pub fn unique(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{name}-{}-{nanos:x}-{n}", std::process::id())
}

/// Every case, in one place: calls `$crate::$m!` with the prefix tokens and
/// the case names, so the test generator and [`run_all`] cannot drift apart.
#[doc(hidden)]
#[macro_export]
macro_rules! __testkit_cases {
    ($m:ident { $($pre:tt)* }) => {
        $crate::$m! { $($pre)*
            round_trip, null_is_a_value, decode_mismatch_names_the_key, remove, missing_names_are_none,
            get_state_many, bulk_writes_are_per_key, etag, first_write, transactions, transaction_order,
            transaction_all_or_nothing, ttl_rejects_bad_values, ttl_expires, ttl_metadata, ttl_removed_by_plain_set,
            list_keys_by_prefix, watch_prefix, disabled_get, disabled_set, disabled_remove, key_prefix,
            scoped_store, key_edge_cases, key_limits, concurrent_counter, large_value
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __testkit_run_all {
    ($factory:ident; $($case:ident),+ $(,)?) => {
        $(
            eprintln!("[purista-testkit] {}", stringify!($case));
            $crate::testkit::$case($factory).await;
        )+
    };
}

/// Runs every case one after another, for a store that lives only as long
/// as one test (a cluster started for it ...). Prefer [`behaviour_suite!`],
/// which reports each case as its own test.
///
/// [`behaviour_suite!`]: crate::behaviour_suite
pub async fn run_all(factory: &impl Factory) {
    crate::__testkit_cases!(__testkit_run_all { factory; });
}

/// One `#[tokio::test]` per behaviour case, for a factory function
/// `async fn(StoreConfig) -> Option<Arc<dyn StateStore>>`.
#[macro_export]
macro_rules! behaviour_suite {
    ($factory:path) => {
        $crate::__testkit_cases!(behaviour_suite { @cases $factory; });
    };
    (@cases $factory:path; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::testkit::$case(&$factory).await
            }
        )+
    };
}
