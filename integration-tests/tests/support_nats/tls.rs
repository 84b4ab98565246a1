//! A `nats-server -js` whose client port speaks TLS with a certificate from
//! a throwaway CA (`integration_tests::tls`), with a user and password.

use std::path::PathBuf;

use integration_tests::{
    fixtures::{NatsServer, Process},
    tls::Certificates,
};
use purista_nats_state_store::{NatsStateStore, NatsStateStoreBuilder, Storage};

pub const USER: &str = "ada";
pub const PASSWORD: &str = "tls-s3cret";

/// `None` (after saying why) without `nats-server`.
pub async fn start(certs: &Certificates) -> Option<Process> {
    NatsServer::new("nats-tls").jetstream().tls(certs).user(USER, PASSWORD).start().await
}

pub fn builder(port: u16, ca: PathBuf, password: &str, bucket: &str) -> NatsStateStoreBuilder {
    NatsStateStore::builder()
        .server(format!("tls://127.0.0.1:{port}"))
        .require_tls(true)
        .root_certificate(ca)
        .user_and_password(USER, password)
        .bucket(bucket)
        .storage(Storage::Memory)
}
