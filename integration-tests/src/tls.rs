//! Throwaway certificates for TLS tests, made with the `openssl` command: a
//! CA, a server certificate it signed for `127.0.0.1`, and a second CA that
//! signed nothing (for "untrusted certificate" cases).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// Files in a temporary directory, removed on drop.
#[derive(Debug)]
pub struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    /// Makes the certificates; `None` (after saying why, or panicking under
    /// `PURISTA_TEST_REQUIRE_SERVICES=1`) without an `openssl` command.
    pub fn make() -> Option<Certificates> {
        let found =
            Command::new("openssl").arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status();
        if found.is_err() {
            return crate::fixtures::unavailable(
                "TLS tests: no openssl command on PATH (apt-get install openssl)",
            );
        }
        let dir = std::env::temp_dir().join(purista_core::testkit::unique("purista-tls"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let certs = Certificates { dir };
        certs.authority("ca");
        certs.authority("other-ca");
        certs.openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(certs.dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("san.ext");
        certs.openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ]);
        Some(certs)
    }

    fn authority(&self, name: &str) {
        let (key, crt, der) = (format!("{name}.key"), format!("{name}.crt"), format!("{name}.der"));
        let subject = format!("/CN=purista test {name}");
        self.openssl(&[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &subject, "-keyout",
            &key, "-out", &crt,
        ]);
        self.openssl(&["x509", "-in", &crt, "-outform", "DER", "-out", &der]);
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl").args(args).current_dir(&self.dir).output().expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A file of the set: `ca.crt`, `ca.der`, `other-ca.crt`, `other-ca.der`,
    /// `server.crt`, `server.key`.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The directory holding them.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
