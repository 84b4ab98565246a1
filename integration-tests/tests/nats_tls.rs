//! NATS over TLS, with a user and password: a `nats-server -js` whose client
//! port speaks TLS with a certificate from a throwaway CA
//! (`integration_tests::tls`). The whole behaviour suite runs over it, and an
//! untrusted certificate or a wrong password fails with a typed error that
//! never shows the password.

mod support_nats;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use integration_tests::{ports::free_port, tls::Certificates};
use purista_core::{ErrorKind, StateStore, StoreConfig};
use purista_nats_state_store::{NatsStateStore, NatsStateStoreBuilder, Storage};
use support_nats::Proc;

const USER: &str = "ada";
const PASSWORD: &str = "tls-s3cret";

async fn start(certs: &Certificates) -> Option<Proc> {
    let (cert, key) = (certs.path("server.crt"), certs.path("server.key"));
    let args = [
        "-js",
        "-sd",
        "{dir}",
        "--tls",
        "--tlscert",
        cert.to_str().unwrap(),
        "--tlskey",
        key.to_str().unwrap(),
        "--user",
        USER,
        "--pass",
        PASSWORD,
    ];
    Proc::start_on("tls", free_port(), &args).await
}

fn builder(port: u16, ca: PathBuf, password: &str, bucket: &str) -> NatsStateStoreBuilder {
    NatsStateStore::builder()
        .server(format!("tls://127.0.0.1:{port}"))
        .require_tls(true)
        .root_certificate(ca)
        .user_and_password(USER, password)
        .bucket(bucket)
        .storage(Storage::Memory)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behaviour_suite_over_tls_with_a_password() {
    let Some(certs) = Certificates::make() else { return };
    let Some(server) = start(&certs).await else { return };
    // One bucket for the whole suite: its cases share data, as on a real server.
    let (port, ca, bucket) = (server.port, certs.path("ca.crt"), support_nats::bucket("tls-suite"));
    let factory = move |config: StoreConfig| {
        let builder = builder(port, ca.clone(), PASSWORD, &bucket).store_config(config);
        Box::pin(async move {
            let store = builder.connect().await.expect("connect over TLS");
            Some(Arc::new(store) as Arc<dyn StateStore>)
        }) as std::pin::Pin<Box<dyn std::future::Future<Output = Option<Arc<dyn StateStore>>> + Send>>
    };
    purista_core::testkit::run_all(&factory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_or_wrong_password_is_a_clear_error() {
    let Some(certs) = Certificates::make() else { return };
    let Some(server) = start(&certs).await else { return };
    for (ca, password) in [("other-ca", PASSWORD), ("ca", "not-the-password")] {
        let started = Instant::now();
        let ca = certs.path(&format!("{ca}.crt"));
        let err = builder(server.port, ca, password, "tls").connect().await.expect_err("must not connect");
        let text = format!("{err} {err:?}");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{text}");
        assert!(!text.contains(PASSWORD) && !text.contains("not-the-password"), "no password: {text}");
        assert!(started.elapsed() < Duration::from_secs(15), "bounded: {:?}", started.elapsed());
    }
}
