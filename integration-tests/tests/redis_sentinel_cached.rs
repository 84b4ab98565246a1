//! The near cache's rules through Sentinel (master, replica, one sentinel
//! on loopback ports): the `cache` cases, each instance its own cache over
//! its own connection.

mod support_redis;

use std::process::ExitCode;

use integration_tests::fixtures::redis_topology::Sentinel;
use purista_core::testkit;

fn main() -> ExitCode {
    let sentinel = tokio::runtime::Runtime::new().expect("runtime").block_on(Sentinel::start());
    let factory = testkit::cached(support_redis::factory(sentinel.as_ref().map(Sentinel::url), None));
    let code = testkit::main_with(factory, &["cache"], Vec::new());
    drop(sentinel);
    code
}
