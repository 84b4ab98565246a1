//! The near cache's rules through Sentinel (master, replica, one sentinel
//! on loopback ports): the `cache` cases, each instance its own cache over
//! its own connection; and a master frozen (SIGSTOP) until Sentinel fails
//! over, while an instance reads through its cache.

mod support_redis;

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use integration_tests::fixtures::{own_topology_trial, redis_topology::Sentinel};
use purista_core::{
    StateStore, StateStoreExt,
    testkit::{self, unique},
};

/// How long the failover and the reconnections may take.
const PATIENCE: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let sentinel = tokio::runtime::Runtime::new().expect("runtime").block_on(Sentinel::start());
    let factory = testkit::cached(support_redis::factory(sentinel.as_ref().map(Sentinel::url), None));
    let frozen = own_topology_trial(
        "a frozen master's cached values are not served after the failover",
        Sentinel::start,
        frozen_master,
    );
    let code = testkit::main_with(factory, &["cache"], vec![frozen]);
    drop(sentinel);
    code
}

/// A frozen master closes no connection: the cache's feed hears nothing.
/// Once another instance's write is acknowledged by the new master, a read
/// begun `bound` later must not answer the value cached before the freeze.
async fn frozen_master(mut sentinel: Sentinel) {
    let url = sentinel.url();
    let cached = support_redis::cached(&url).await;
    // With the old master frozen, no replica is left to confirm a write:
    // this writer does not wait for one.
    let writer = support_redis::builder(&url).wait_for_replicas(0, Duration::ZERO).connect().await;
    let writer = writer.expect("a second instance");
    let bound = cached.capabilities().stale_reads.expect("a near cache declares its bound");
    let key = unique("frozen");
    writer.set(&key, &0).await.unwrap();
    for _ in 0..2 {
        assert_eq!(cached.get::<i32>(&key).await.unwrap(), Some(0));
    }
    let (master, replica) = (sentinel.master, sentinel.replica);
    sentinel.process(master).pause().expect("SIGSTOP the master");
    let frozen = Instant::now();
    while sentinel.current_master() != replica {
        assert!(frozen.elapsed() < PATIENCE, "Sentinel did not fail over in {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failed_over = frozen.elapsed();
    // The writer's client finds the new master once its commands time out.
    while let Err(e) = writer.set(&key, &1).await {
        assert!(frozen.elapsed() < PATIENCE, "the writer never reached the new master: {e:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let acknowledged = Instant::now();
    let (read, stale) =
        testkit::reads_after_a_write(&*cached, &key, (&0, &1), acknowledged, bound, PATIENCE).await;
    let read = read.unwrap_or_else(|| {
        panic!(
            "the write after the failover never reached the cache ({stale} stale reads); {:?}",
            cached.metrics()
        )
    });
    sentinel.process(master).resume().expect("SIGCONT the old master");
    eprintln!(
        "[redis_sentinel_cached] failover {failed_over:?} after the freeze; the write read {read:?} after its \
         acknowledgement; metrics {:?}",
        cached.metrics()
    );
    assert_eq!(
        stale, 0,
        "reads begun {bound:?} after the acknowledgement answered the frozen master's value"
    );
}
