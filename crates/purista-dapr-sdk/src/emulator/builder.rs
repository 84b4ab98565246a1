//! [`SidecarBuilder`]: how a [`Sidecar`] is set up and started.

use std::{
    fmt, io,
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use parking_lot::Mutex;
use tokio::sync::watch;

use super::{
    DEFAULT_MAX_BODY_SIZE, DEFAULT_STORE, Sidecar,
    server::Server,
    service::{self, Emulator},
    storage::State,
};

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
        let state = Arc::new(Mutex::new(State::new(self.stores)));
        let (stalled, stall_rx) = watch::channel(false);
        let emulator = Emulator::new(
            self.app_id.clone(),
            state.clone(),
            self.transactions,
            self.delay,
            self.max_body_size,
            stall_rx,
        );
        let (server, serve) =
            Server::new(listener, service::routes(emulator.clone(), self.api_token.clone()));
        let sidecar = Sidecar {
            addr,
            endpoint: format!("http://{addr}"),
            app_id: self.app_id,
            state,
            emulator,
            api_token: self.api_token,
            stalled,
            server,
        };
        Ok((sidecar, serve))
    }
}
