//! The behaviour suite through a near cache on the shared Redis: each
//! instance is its own `CachedStore` over its own connection. Cases that need
//! every read fresh are skipped; the `cache` cases check the cache's rules.

mod support_redis;

fn main() -> std::process::ExitCode {
    purista_core::testkit::main(purista_core::testkit::cached(support_redis::store))
}
