//! The behaviour suite through Sentinel (master, replica, one sentinel on
//! loopback ports).

mod support_redis;

use std::process::ExitCode;

use support_redis::topology::Sentinel;

fn main() -> ExitCode {
    let sentinel = Sentinel::start();
    let code =
        purista_core::testkit::main(support_redis::factory(sentinel.as_ref().map(Sentinel::url), None));
    drop(sentinel);
    code
}
