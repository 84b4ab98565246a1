//! Running clients: store instances, tasks beside a fault, pacing, and how
//! a call ended.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use super::{Report, workload::*};
use crate::testkit::{
    Factory,
    linearizability::{FOREIGN, Value},
};
use crate::{Error, ErrorKind, Json, StateStore, StoreConfig};

/// While the fault runs, a client goes on past `ops_per_client`, up to
/// this many times as many operations.
pub(super) const STRETCH: usize = 50;

/// `n` instances, or `None` when the factory has no store.
pub(super) async fn instances(factory: &impl Factory, n: usize) -> Option<Vec<Arc<dyn StateStore>>> {
    let mut stores = Vec::new();
    for _ in 0..n.max(1) {
        stores.push(factory.store(StoreConfig::default()).await?);
    }
    Some(stores)
}

/// A check's report, named after the store, and a store for each client:
/// `workload.instances` instances, each `workload.clients_per_instance`
/// times in a row; `Err`: the report, skipped, when the factory has none.
pub(super) async fn begin(
    check: &'static str,
    factory: &impl Factory,
    workload: &Workload,
) -> Result<(Report, Vec<Arc<dyn StateStore>>), Report> {
    let mut report = Report::new(check, seed(workload));
    let Some(stores) = instances(factory, workload.instances).await else {
        return Err(report.skip("no store"));
    };
    report.store = stores[0].name().to_owned();
    let each = workload.clients_per_instance.max(1);
    Ok((report, stores.iter().flat_map(|store| std::iter::repeat_n(store.clone(), each)).collect()))
}

/// Runs the clients on tasks of their own alongside `fault`; a client's
/// panic is the caller's.
pub(super) async fn drive(
    clients: Vec<impl Future<Output = ()> + Send + 'static>,
    fault: impl Future<Output = ()> + Send,
    fault_over: &AtomicBool,
) {
    let tasks: Vec<_> = clients.into_iter().map(tokio::spawn).collect();
    let fault = async {
        fault.await;
        fault_over.store(true, Ordering::Release);
    };
    let ((), joined) = tokio::join!(fault, futures_util::future::join_all(tasks));
    for result in joined {
        if let Err(e) = result
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// Removes what the run wrote and releases the instances (best effort: a
/// server the fault left down is not the check's concern).
pub(super) async fn cleanup(stores: &[Arc<dyn StateStore>], keys: &[String]) {
    for key in keys {
        let _ = tokio::time::timeout(Duration::from_secs(2), stores[0].remove_state(key)).await;
    }
    for (i, store) in stores.iter().enumerate() {
        if stores[..i].iter().any(|earlier| Arc::ptr_eq(earlier, store)) {
            continue;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), store.destroy()).await;
    }
}

/// How many operations a client runs, and the pause between them.
pub(super) struct Pace {
    pub(super) done: usize,
    pub(super) min: usize,
    pub(super) max: usize,
    pub(super) think: Duration,
    pub(super) fault_over: Arc<AtomicBool>,
}

impl Pace {
    pub(super) fn new(workload: &Workload, fault_over: Arc<AtomicBool>) -> Self {
        let min = workload.ops_per_client;
        Pace { done: 0, min, max: min.saturating_mul(STRETCH), think: workload.think, fault_over }
    }

    /// Whether the client runs another operation (after a pause).
    pub(super) async fn next(&mut self, rng: &mut Rng) -> bool {
        if self.done >= self.max || (self.done >= self.min && self.fault_over.load(Ordering::Acquire)) {
            return false;
        }
        if self.think.is_zero() {
            if rng.coin() {
                tokio::task::yield_now().await;
            }
        } else {
            let nanos = u64::try_from(self.think.as_nanos()).unwrap_or(u64::MAX);
            tokio::time::sleep(Duration::from_nanos(rng.next() % nanos.max(1))).await;
        }
        self.done += 1;
        true
    }
}

/// How a call ended, as far as the checks are concerned.
pub(super) enum Answer<T> {
    Done(T),
    Conflict,
    /// Maybe applied, maybe not.
    Unknown,
    /// An error no check expects.
    Failed(Error),
}

pub(super) async fn attempt<T>(timeout: Duration, call: impl Future<Output = crate::Result<T>>) -> Answer<T> {
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Answer::Unknown,
        Ok(Ok(value)) => Answer::Done(value),
        Ok(Err(e)) => match e.kind() {
            ErrorKind::Conflict => Answer::Conflict,
            ErrorKind::Timeout | ErrorKind::Unavailable | ErrorKind::Backend => Answer::Unknown,
            _ => Answer::Failed(e),
        },
    }
}

pub(super) fn json<T: serde::Serialize>(value: T) -> Json {
    Json::from(serde_json::json!(value))
}

pub(super) fn decode(value: &Json) -> Value {
    value.decode::<Value>().unwrap_or(FOREIGN)
}
