//! A TLS-only `redis-server` with a password and a certificate from a
//! throwaway CA (`integration_tests::tls`), killed when dropped.

use std::{
    process::{Child, Command},
    sync::Arc,
    time::{Duration, Instant},
};

use integration_tests::tls::Certificates;
use purista_redis_state_store::fred::{prelude::Config, rustls};

pub const PASSWORD: &str = "tls-s3cret";

pub struct TlsServer {
    pub port: u16,
    certs: Certificates,
    child: Child,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsServer {
    pub fn start() -> Option<TlsServer> {
        let certs = Certificates::make()?;
        let port = integration_tests::ports::free_port();
        let log = std::fs::File::create(certs.path("redis.log")).unwrap();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--tls-cert-file", "server.crt", "--tls-key-file", "server.key"])
            .args(["--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no"])
            .args(["--requirepass", PASSWORD, "--save", "", "--appendonly", "no"])
            .current_dir(certs.dir())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                let why = format!("Redis TLS: cannot start redis-server: {e} (apt-get install redis-server)");
                return integration_tests::fixtures::unavailable(&why);
            }
        };
        let mut server = TlsServer { port, certs, child };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = std::fs::read_to_string(server.certs.path("redis.log")).unwrap_or_default();
                panic!("redis-server with TLS exited ({status}): {log}");
            }
            assert!(started.elapsed() < Duration::from_secs(20), "redis-server with TLS did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
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
