//! A `nats-server -js` whose client port speaks TLS with a certificate from
//! a throwaway CA (`integration_tests::tls`), with a user and password.

use std::path::PathBuf;

use integration_tests::{ports::free_port, tls::Certificates};
use purista_nats_state_store::{NatsStateStore, NatsStateStoreBuilder, Storage};

use super::Proc;

pub const USER: &str = "ada";
pub const PASSWORD: &str = "tls-s3cret";

pub async fn start(certs: &Certificates) -> Option<Proc> {
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

pub fn builder(port: u16, ca: PathBuf, password: &str, bucket: &str) -> NatsStateStoreBuilder {
    NatsStateStore::builder()
        .server(format!("tls://127.0.0.1:{port}"))
        .require_tls(true)
        .root_certificate(ca)
        .user_and_password(USER, password)
        .bucket(bucket)
        .storage(Storage::Memory)
}
