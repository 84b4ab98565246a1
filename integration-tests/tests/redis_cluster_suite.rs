//! The behaviour suite on a real 3-master Redis Cluster on loopback ports,
//! keys under one `{hash tag}` so that multi-key transactions are legal.

mod support_redis;

use std::process::ExitCode;

use integration_tests::fixtures::redis_topology::Cluster;

fn main() -> ExitCode {
    let cluster = tokio::runtime::Runtime::new().expect("runtime").block_on(Cluster::start());
    let code = purista_core::testkit::main(support_redis::factory(
        cluster.as_ref().map(Cluster::url),
        Some("suite"),
    ));
    drop(cluster);
    code
}
