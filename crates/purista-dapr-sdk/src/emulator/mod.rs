//! An in-process stand-in for the Dapr sidecar (feature `emulator`), so that
//! handlers can be tested without `daprd`.
//!
//! [`Sidecar`] serves the gRPC service `dapr.proto.runtime.v1.Dapr` on
//! loopback with the state API's semantics (Dapr's in-memory state
//! component, as seen through the sidecar):
//!
//! - `SaveState`, `GetState`, `GetBulkState`, `DeleteState`,
//!   `DeleteBulkState` and `ExecuteStateTransaction`; every other RPC answers
//!   `Unimplemented`.
//! - Keys are stored as `<app-id>||<key>`; an empty key or one holding `||`
//!   is refused with `InvalidArgument`.
//! - ETags are decimal version numbers: a malformed ETag is
//!   `InvalidArgument`, a mismatch (an ETag on a missing key included) is
//!   `Aborted`. First-write concurrency without an ETag inserts only.
//!   An empty ETag counts as none (components test `HasETag()`); a delete
//!   without an ETag succeeds unless first-write finds the key present.
//! - Multi-item `SaveState` and `DeleteBulkState` check every condition
//!   before applying anything (as the in-memory component does).
//! - Item metadata `ttlInSeconds` (an integer; `-1`, `0` or leaving it out
//!   means no expiry; anything else is an error, answered `Internal`) sets a
//!   TTL; reads report `ttlExpireTime` (RFC 3339, UTC, whole seconds).
//! - Transactions apply `upsert` and `delete` operations in order, all or
//!   nothing; each condition is checked against the state the earlier
//!   operations leave behind. Any failure, an ETag conflict included, is
//!   `Internal` with the message `error while executing state transaction:
//!   possible etag mismatch. error from state store`, as Dapr answers.
//! - With an API token configured, a request without `dapr-api-token`
//!   metadata, or with another token, is `Unauthenticated`.
//! - An unknown store name is `InvalidArgument` (`state store <name> is not
//!   found`).
//! - A request or an answer over the size limit (daprd's `--max-body-size`,
//!   4 MiB by default, which daprd sets as gRPC's receive and send limits)
//!   is `ResourceExhausted`, with grpc-go's messages (`grpc: received
//!   message larger than max (N vs. M)`, `grpc: trying to send message
//!   larger than max (N vs. M)`): two 3 MB values can be saved and read one
//!   by one, but not read in one `GetBulkState`.
//! - `GET /v1.0/healthz/outbound` answers 204 on the same port (the real
//!   sidecar uses a separate HTTP port).
//!
//! Faults, for tests of what a client does when the sidecar misbehaves:
//! [`SidecarBuilder::delay`] slows every state call down;
//! [`Sidecar::stall`] and [`Sidecar::resume`] hold state calls back for a
//! while (a call whose client gave up still runs on resume);
//! [`Sidecar::kill`] and [`Sidecar::restart`] take the server away and bring
//! it back on the same address over the same data.
//!
//! ```
//! use purista_dapr_sdk::emulator::Sidecar;
//! use purista_dapr_sdk::{DaprConfig, DaprStateStore};
//! use purista_core::StateStoreExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sidecar = Sidecar::builder().app_id("orders").api_token("s3cret").start().await?;
//! let config = DaprConfig::default().endpoint(sidecar.endpoint()).api_token("s3cret");
//! let store = DaprStateStore::connect(config).await?;
//! store.set("order:1", &"paid").await?;
//! assert_eq!(sidecar.stored_keys("statestore"), ["orders||order:1"]);
//! # Ok(()) }
//! ```

mod builder;
mod rules;
mod server;
mod service;
mod storage;
#[cfg(test)]
mod tests;

use std::{fmt, io, net::SocketAddr, sync::Arc};

use parking_lot::Mutex;
use tokio::sync::watch;

pub use self::builder::SidecarBuilder;
use self::{server::Server, service::Emulator, storage::State};

/// The default state store component name (`statestore`, as `dapr init` names it).
pub const DEFAULT_STORE: &str = "statestore";
/// daprd's default `--max-body-size` (4 MiB), its gRPC message size limit
/// both ways.
pub const DEFAULT_MAX_BODY_SIZE: usize = 4 << 20;

/// A running sidecar emulator; shut down when dropped.
pub struct Sidecar {
    addr: SocketAddr,
    endpoint: String,
    app_id: String,
    state: Arc<Mutex<State>>,
    /// What a restart serves again.
    emulator: Emulator,
    api_token: Option<String>,
    /// `true` while stalled; the emulator holds state calls back meanwhile.
    stalled: watch::Sender<bool>,
    server: Server,
}

impl fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sidecar").field("endpoint", &self.endpoint).field("app_id", &self.app_id).finish()
    }
}

impl Sidecar {
    /// Starts an emulator with the defaults of [`SidecarBuilder`].
    pub async fn start() -> io::Result<Sidecar> {
        Sidecar::builder().start().await
    }

    /// Configures an emulator.
    pub fn builder() -> SidecarBuilder {
        SidecarBuilder::default()
    }

    /// The gRPC endpoint, `http://127.0.0.1:<port>` (what `DAPR_GRPC_ENDPOINT` would hold).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The address the emulator listens on (gRPC and the HTTP health check).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The app id keys are stored under.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// Keys held by `store` as stored (`<app-id>||<key>`), sorted, expired
    /// ones left out. Empty for an unknown store.
    pub fn stored_keys(&self, store: &str) -> Vec<String> {
        self.state.lock().stored_keys(store)
    }

    /// Stops serving (the same as dropping it).
    pub fn shutdown(mut self) {
        self.server.stop();
    }

    /// Stalls the sidecar, as a daprd whose state component hangs: state
    /// calls (arriving or waiting out [`SidecarBuilder::delay`]) are held
    /// before they read or change anything, until [`resume`](Self::resume).
    /// A held call runs when the stall ends even if its client gave up or
    /// its deadline passed meanwhile, so a call that timed out may have been
    /// applied. Connections stay open; other requests are answered.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Ends a [`stall`](Self::stall): the held state calls run, in no
    /// particular order, and new ones are served at once.
    pub fn resume(&self) {
        self.stalled.send_replace(false);
    }

    /// Goes away as a sidecar process that dies does: stops listening and
    /// cuts every open connection (calls in flight fail; one may have been
    /// applied). Returns once connections to the address are refused. The
    /// port stays held (bound, not listening) for [`restart`](Self::restart),
    /// so that no listener bound to port 0 meanwhile takes it. The data
    /// stays, as it does behind a persistent state component: a restart
    /// serves it again.
    pub async fn kill(&mut self) {
        self.server.kill(self.addr).await;
    }

    /// Listens again on the same address, over the same data, with the same
    /// settings, on the current Tokio runtime (killing the running server
    /// first, if any): a sidecar that comes back. A stall is kept. Fails at
    /// once, with an error naming the address, if the port was taken while
    /// the sidecar was down (only a socket bound to that very address can
    /// take it).
    pub async fn restart(&mut self) -> io::Result<()> {
        let routes = service::routes(self.emulator.clone(), self.api_token.clone());
        self.server.restart(self.addr, routes).await
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.server.stop();
    }
}
