//! NATS over TLS, with a user and password: a `nats-server -js` whose client
//! port speaks TLS with a certificate from a throwaway CA
//! (`integration_tests::tls`): an untrusted certificate or a wrong password
//! fails with a typed error that never shows the password.
//! (`nats_tls_suite.rs` runs the behaviour suite over it.)

mod support_nats;

use std::time::{Duration, Instant};

use integration_tests::tls::Certificates;
use purista_core::ErrorKind;
use support_nats::tls::{PASSWORD, builder, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_or_wrong_password_is_a_clear_error() {
    let Some(certs) = Certificates::make() else { return };
    let Some(server) = start(&certs).await else { return };
    for (ca, password) in [("other-ca", PASSWORD), ("ca", "not-the-password")] {
        let started = Instant::now();
        let ca = certs.path(&format!("{ca}.crt"));
        let err = builder(server.port(), ca, password, "tls").connect().await.expect_err("must not connect");
        let text = format!("{err} {err:?}");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{text}");
        assert!(!text.contains(PASSWORD) && !text.contains("not-the-password"), "no password: {text}");
        assert!(started.elapsed() < Duration::from_secs(15), "bounded: {:?}", started.elapsed());
    }
}
