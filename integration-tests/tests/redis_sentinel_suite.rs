//! The behaviour suite through Sentinel (master, replica, one sentinel on
//! loopback ports).

mod support_redis;

use std::process::ExitCode;

use integration_tests::fixtures::redis_topology::Sentinel;

fn main() -> ExitCode {
    let sentinel = tokio::runtime::Runtime::new().expect("runtime").block_on(Sentinel::start());
    let code =
        purista_core::testkit::main(support_redis::factory(sentinel.as_ref().map(Sentinel::url), None));
    drop(sentinel);
    code
}
