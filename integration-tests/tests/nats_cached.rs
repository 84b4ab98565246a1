//! The behaviour suite through a near cache on NATS JetStream KV: each
//! instance is its own `CachedStore` over its own connection. Cases that need
//! every read fresh are skipped; the `cache` cases check the cache's rules.

mod support_nats;

fn main() -> std::process::ExitCode {
    purista_core::testkit::main(purista_core::testkit::cached(support_nats::store))
}
