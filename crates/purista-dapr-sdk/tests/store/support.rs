//! One emulator shared by the tests, configs on it, and matchers for the
//! errors.

use std::{net::SocketAddr, sync::OnceLock};

use purista_core::{ErrorKind, Json};
use purista_dapr_sdk::{DaprConfig, GrpcError, emulator::Sidecar};

pub const TOKEN: &str = "test-token-3f9a";

/// One emulator for all the tests, on its own thread: each test runs its own runtime.
pub fn sidecar() -> &'static Sidecar {
    static SIDECAR: OnceLock<Sidecar> = OnceLock::new();
    SIDECAR.get_or_init(|| {
        Sidecar::builder()
            .app_id("store-tests")
            .api_token(TOKEN)
            .start_on_thread()
            .expect("start the emulator")
    })
}

/// The shared emulator, with its token.
pub fn config() -> DaprConfig {
    DaprConfig::default().endpoint(sidecar().endpoint()).api_token(TOKEN)
}

#[track_caller]
pub fn expect_kind<T: std::fmt::Debug>(
    result: purista_core::Result<T>,
    kind: ErrorKind,
) -> purista_core::Error {
    match result {
        Err(e) if e.kind() == kind => e,
        other => panic!("expected {kind:?}, got {other:?}"),
    }
}

/// The sidecar's gRPC code behind an error, `None` if it was refused locally.
pub fn grpc_code(err: &purista_core::Error) -> Option<tonic::Code> {
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        if let Some(g) = s.downcast_ref::<GrpcError>() {
            return Some(g.code());
        }
        source = s.source();
    }
    None
}

/// A loopback address nothing listens on (for now).
pub fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A JSON string value of about `bytes` bytes.
pub fn big_value(bytes: usize, fill: char) -> Json {
    Json::encode(&fill.to_string().repeat(bytes)).unwrap()
}
