//! A TLS-only `redis-server` with a password and a certificate from a
//! throwaway CA (`integration_tests::tls`), and fred configs for it.

use std::sync::Arc;

use integration_tests::{
    fixtures::{Process, RedisServer},
    tls::Certificates,
};
use purista_redis_state_store::fred::{prelude::Config, rustls};

pub const PASSWORD: &str = "tls-s3cret";

pub struct TlsServer {
    pub port: u16,
    // Dropped before the certificates it reads.
    _server: Process,
    certs: Certificates,
}

impl TlsServer {
    /// `None` (after saying why) without `openssl` or `redis-server`.
    pub async fn start() -> Option<TlsServer> {
        let certs = Certificates::make()?;
        let server = RedisServer::new("redis-tls").tls(&certs).password(PASSWORD).start().await?;
        Some(TlsServer { port: server.port(), _server: server, certs })
    }

    /// A fred config for `rediss://` that trusts the certificates `ca` signed.
    pub fn config(&self, ca: &str, password: &str) -> Config {
        let mut config = Config::from_url(&format!("rediss://:{password}@127.0.0.1:{}", self.port)).unwrap();
        let der = std::fs::read(self.certs.path(&format!("{ca}.der"))).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from(der)).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.tls = Some(tls.into());
        config
    }
}
