//! The concurrency checks of `purista_core::testkit` through
//! `DaprStateStore` against the in-process sidecar emulator, while the
//! sidecar stalls or goes away and comes back: the history must stay
//! linearizable per key (a call that timed out or broke may or may not have
//! taken effect), and the bank must keep its total.
//!
//! Only the emulator can be faulted from here (a real sidecar from
//! `DAPR_GRPC_ENDPOINT` is not used). Its faults are ones a real sidecar
//! shows:
//! - a stall ([`Sidecar::stall`]): state calls are held for 2.5 s, past the
//!   clients' request timeout, as by a daprd whose state component hangs;
//!   a held call still runs when the stall ends, after its client gave up;
//! - a restart ([`Sidecar::kill`], [`Sidecar::restart`]): connections cut,
//!   nothing listening for a second, then the same address again. The data
//!   stays, as it does behind a persistent state component (the emulator
//!   keeps it in memory across the restart; a real daprd in front of the
//!   in-memory component would lose it).

mod support_pace;

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use purista_core::{
    StateStore, StoreConfig,
    testkit::{self, Report, Workload},
};
use purista_dapr_sdk::{DaprConfig, DaprStateStore, emulator::Sidecar};
use support_pace::Paced;

/// What a factory's closures return.
type StoreFuture = Pin<Box<dyn Future<Output = Option<Arc<dyn StateStore>>> + Send>>;

const TOKEN: &str = "faults-token";

/// How long a store waits for the sidecar's answer (the `grpc-timeout` of
/// every call): short, so that calls into a stall become indeterminate
/// quickly.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);

/// The checks' own bound on a call, above [`REQUEST_TIMEOUT`] (a backstop:
/// the store gives up first).
const OP_TIMEOUT: Duration = Duration::from_millis(1500);

/// How long the sidecar holds calls back; every client meets it (it pauses
/// at most 10 ms between calls).
const STALL: Duration = Duration::from_millis(2500);

/// How long nothing listens during a restart.
const DOWN: Duration = Duration::from_secs(1);

/// Eight clients, each on a store (and gRPC channel) of its own, on four
/// keys; at least 150 operations each, and on while the fault runs.
fn workload() -> Workload {
    Workload::with_fault(8, 4, OP_TIMEOUT)
}

async fn sidecar() -> Sidecar {
    Sidecar::builder().app_id("faults").api_token(TOKEN).start().await.expect("start the Dapr emulator")
}

/// Stores on `sidecar`, each with a channel of its own, paced after
/// failures (see `support_pace`).
fn dapr(sidecar: &Sidecar) -> impl Fn(StoreConfig) -> StoreFuture + Sync + use<> {
    let config = DaprConfig::default()
        .endpoint(sidecar.endpoint())
        .api_token(TOKEN)
        .request_timeout(REQUEST_TIMEOUT)
        .wait_for_sidecar(Duration::from_secs(5));
    move |store| {
        let config = config.clone().store_config(store);
        Box::pin(async move {
            let store = DaprStateStore::connect(config).await.expect("connect to the emulator");
            Some(Paced::wrap(Arc::new(store)))
        })
    }
}

fn step(what: &str) {
    eprintln!("[fault] {what}");
}

/// Traffic, a stall of [`STALL`], traffic.
async fn stall(sidecar: &mut Sidecar) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    step("stall");
    sidecar.stall();
    tokio::time::sleep(STALL).await;
    sidecar.resume();
    step("resumed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Traffic, the sidecar gone for [`DOWN`] and back on the same address,
/// traffic.
async fn restart(sidecar: &mut Sidecar) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    step("kill");
    sidecar.kill().await;
    tokio::time::sleep(DOWN).await;
    sidecar.restart().await.expect("restart the emulator on the same address");
    step("restarted");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The check passed and the fault met traffic: calls ran into it and their
/// outcome is unknown.
#[track_caller]
fn passed_through_the_fault(report: &Report) {
    report.assert_passed();
    assert!(report.skipped.is_none(), "{report}");
    assert!(report.indeterminate > 0, "no call met the fault: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dapr_is_linearizable_through_a_stalled_sidecar() {
    let mut sidecar = sidecar().await;
    let factory = dapr(&sidecar);
    let report = testkit::linearizable_with(&factory, workload(), stall(&mut sidecar)).await;
    passed_through_the_fault(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dapr_bank_keeps_its_total_through_a_stalled_sidecar() {
    let mut sidecar = sidecar().await;
    let factory = dapr(&sidecar);
    let report = testkit::bank_with(&factory, workload(), stall(&mut sidecar)).await;
    passed_through_the_fault(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dapr_is_linearizable_through_a_sidecar_restart() {
    let mut sidecar = sidecar().await;
    let factory = dapr(&sidecar);
    let report = testkit::linearizable_with(&factory, workload(), restart(&mut sidecar)).await;
    passed_through_the_fault(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dapr_bank_keeps_its_total_through_a_sidecar_restart() {
    let mut sidecar = sidecar().await;
    let factory = dapr(&sidecar);
    let report = testkit::bank_with(&factory, workload(), restart(&mut sidecar)).await;
    passed_through_the_fault(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dapr_counts_every_acknowledged_increment_through_a_stall_and_a_restart() {
    let mut sidecar = sidecar().await;
    let factory = dapr(&sidecar);
    let faults = async {
        stall(&mut sidecar).await;
        restart(&mut sidecar).await;
    };
    let report =
        testkit::counter_with(&factory, Workload { clients_per_instance: 4, ..workload() }, faults).await;
    passed_through_the_fault(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dapr_leases_stay_fenced_through_a_stall_and_a_restart() {
    let mut sidecar = sidecar().await;
    let factory = dapr(&sidecar);
    let faults = async {
        stall(&mut sidecar).await;
        restart(&mut sidecar).await;
    };
    let report = testkit::lease_with(&factory, workload(), faults).await;
    passed_through_the_fault(&report);
}
