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

mod service;
#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    fmt, io,
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};
use tokio_stream::StreamExt;

use self::service::{Emulator, State};

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
    emulator: service::Emulator,
    api_token: Option<String>,
    /// `true` while stalled; the emulator holds state calls back meanwhile.
    stalled: watch::Sender<bool>,
    shutdown: Option<oneshot::Sender<()>>,
    /// Fails (its sender dropped) once the listening socket is closed.
    closed: Option<oneshot::Receiver<()>>,
    /// Duplicates of every accepted socket, to cut connections on drop the
    /// way a sidecar that dies does (a graceful stop would let open
    /// connections carry on).
    connections: Arc<Mutex<Vec<std::net::TcpStream>>>,
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
        self.stop();
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
    /// applied). Returns once the port is free. The data stays, as it does
    /// behind a persistent state component: [`restart`](Self::restart)
    /// serves it again.
    pub async fn kill(&mut self) {
        self.stop();
        if let Some(closed) = self.closed.take() {
            // Err once the listener is dropped: that is the signal.
            let _ = closed.await;
        }
        // A connection accepted just before the listener closed.
        self.stop();
    }

    /// Listens again on the same address, over the same data, with the same
    /// settings, on the current Tokio runtime (killing the running server
    /// first, if any): a sidecar that comes back. A stall is kept.
    pub async fn restart(&mut self) -> io::Result<()> {
        self.kill().await;
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        let routes = service::routes(self.emulator.clone(), self.api_token.clone());
        let (shutdown, closed, serve) = serve(listener, routes, self.connections.clone());
        (self.shutdown, self.closed) = (Some(shutdown), Some(closed));
        tokio::spawn(serve);
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        for socket in self.connections.lock().drain(..) {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Settings of a [`Sidecar`].
#[derive(Clone)]
pub struct SidecarBuilder {
    app_id: String,
    stores: Vec<String>,
    api_token: Option<String>,
    addr: SocketAddr,
    transactions: bool,
    delay: Duration,
    max_body_size: usize,
}

impl fmt::Debug for SidecarBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SidecarBuilder")
            .field("app_id", &self.app_id)
            .field("stores", &self.stores)
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .field("addr", &self.addr)
            .field("transactions", &self.transactions)
            .field("delay", &self.delay)
            .field("max_body_size", &self.max_body_size)
            .finish()
    }
}

impl Default for SidecarBuilder {
    /// App id `emulator`, one store named [`DEFAULT_STORE`], no API token,
    /// transactions on, daprd's message size limit
    /// ([`DEFAULT_MAX_BODY_SIZE`]), a free port on 127.0.0.1.
    fn default() -> Self {
        SidecarBuilder {
            app_id: "emulator".into(),
            stores: vec![DEFAULT_STORE.into()],
            api_token: None,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            transactions: true,
            delay: Duration::ZERO,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
        }
    }
}

impl SidecarBuilder {
    /// The app id keys are stored under (`<app-id>||<key>`).
    pub fn app_id(mut self, app_id: impl Into<String>) -> Self {
        self.app_id = app_id.into();
        self
    }

    /// The state store components, replacing the default one (none at all
    /// makes every state call fail with `FailedPrecondition`, as Dapr does).
    pub fn stores<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.stores = names.into_iter().map(Into::into).collect();
        self
    }

    /// Requires `dapr-api-token` metadata holding `token` on every call.
    pub fn api_token(mut self, token: impl Into<String>) -> Self {
        self.api_token = Some(token.into());
        self
    }

    /// Listens on `addr` instead of a free loopback port.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Whether the stores support transactions (without, the sidecar answers
    /// `Unimplemented`, like a component that lacks them).
    pub fn transactions(mut self, on: bool) -> Self {
        self.transactions = on;
        self
    }

    /// Holds every state call back by `delay` before answering (a slow
    /// sidecar, for timeout tests).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The gRPC message size limit, both ways (daprd's `--max-body-size`;
    /// default [`DEFAULT_MAX_BODY_SIZE`]).
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// Binds and serves on the current Tokio runtime; serving ends when the
    /// [`Sidecar`] is dropped or the runtime shuts down.
    pub async fn start(self) -> io::Result<Sidecar> {
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        let (sidecar, serve) = self.serve(listener)?;
        tokio::spawn(serve);
        Ok(sidecar)
    }

    /// Binds and serves on a thread of its own, with its own runtime: for a
    /// sidecar shared by tests that each run their own runtime.
    pub fn start_on_thread(self) -> io::Result<Sidecar> {
        let listener = std::net::TcpListener::bind(self.addr)?;
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("dapr-emulator")
            .enable_all()
            .build()?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let (sidecar, serve) = self.serve(listener)?;
        std::thread::Builder::new().name("dapr-emulator".into()).spawn(move || runtime.block_on(serve))?;
        Ok(sidecar)
    }

    fn serve(
        self,
        listener: tokio::net::TcpListener,
    ) -> io::Result<(Sidecar, impl Future<Output = ()> + Send + 'static)> {
        let addr = listener.local_addr()?;
        let stores: HashMap<String, service::Store> =
            self.stores.iter().map(|s| (s.clone(), service::Store::default())).collect();
        let state = Arc::new(Mutex::new(State::new(stores)));
        let (stalled, stall_rx) = watch::channel(false);
        let emulator = Emulator::new(
            self.app_id.clone(),
            state.clone(),
            self.transactions,
            self.delay,
            self.max_body_size,
            stall_rx,
        );
        let routes = service::routes(emulator.clone(), self.api_token.clone());
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (shutdown, closed, serve) = serve(listener, routes, connections.clone());
        let sidecar = Sidecar {
            addr,
            endpoint: format!("http://{addr}"),
            app_id: self.app_id,
            state,
            emulator,
            api_token: self.api_token,
            stalled,
            shutdown: Some(shutdown),
            closed: Some(closed),
            connections,
        };
        Ok((sidecar, serve))
    }
}

/// Serves `routes` on `listener` until the shutdown sender is used or
/// dropped; the receiver fails once the listener is closed.
fn serve(
    listener: tokio::net::TcpListener,
    routes: tonic::service::Routes,
    connections: Arc<Mutex<Vec<std::net::TcpStream>>>,
) -> (oneshot::Sender<()>, oneshot::Receiver<()>, impl Future<Output = ()> + Send + 'static) {
    let (shutdown, rx) = oneshot::channel::<()>();
    let (listening, closed) = oneshot::channel::<()>();
    let serve = async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(move |accepted| {
            // Dropped with the listener (tonic drops both on shutdown).
            let _listening = &listening;
            let stream = accepted?.into_std()?;
            // As daprd does: without it, answers larger than one segment
            // wait for the client's delayed ACK (40 ms on Linux).
            stream.set_nodelay(true)?;
            let mut tracked = connections.lock();
            // Forget connections that are already closed.
            tracked.retain(|s: &std::net::TcpStream| s.peer_addr().is_ok());
            tracked.push(stream.try_clone()?);
            tokio::net::TcpStream::from_std(stream)
        });
        let result = tonic::transport::Server::builder()
            .accept_http1(true)
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "dapr emulator stopped");
        }
    };
    (shutdown, closed, serve)
}
