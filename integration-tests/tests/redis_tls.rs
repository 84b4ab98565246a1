//! Redis over TLS, with a password: a `redis-server` on a TLS-only loopback
//! port with a certificate from a throwaway CA (`integration_tests::tls`),
//! the store connected through a fred config that trusts that CA: a wrong CA
//! or password fails with a typed error that names the address and never the
//! password. (`redis_tls_suite.rs` runs the behaviour suite over it.)

mod support_redis;

use std::time::{Duration, Instant};

use purista_core::ErrorKind;
use purista_redis_state_store::RedisStoreBuilder;
use support_redis::tls::{PASSWORD, TlsServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_or_wrong_password_is_a_clear_error() {
    let Some(server) = TlsServer::start().await else { return };
    let address = format!("127.0.0.1:{}", server.port);
    for (ca, password) in [("other-ca", PASSWORD), ("ca", "not-the-password")] {
        let started = Instant::now();
        let err = RedisStoreBuilder::from_config(server.config(ca, password))
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await
            .expect_err("must not connect");
        let text = format!("{err} {err:?}");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{ca}: {text}");
        assert!(text.contains(&address), "names the address: {text}");
        assert!(!text.contains(PASSWORD) && !text.contains("not-the-password"), "no password: {text}");
        assert!(started.elapsed() < Duration::from_secs(10), "bounded: {:?}", started.elapsed());
    }
}
