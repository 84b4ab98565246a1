//! The listening side of a sidecar: serving on a socket, cutting its
//! connections when it dies, holding its port until it comes back.

use std::{io, net::SocketAddr, sync::Arc};

use parking_lot::Mutex;
use tokio::{
    net::{TcpListener, TcpSocket},
    sync::oneshot,
};
use tokio_stream::StreamExt;
use tonic::service::Routes;

/// What tokio's `TcpListener::bind` asks for.
const BACKLOG: u32 = 1024;

/// A server on one address, or the address held while it is down.
#[derive(Debug)]
pub(super) struct Server {
    shutdown: Option<oneshot::Sender<()>>,
    /// Fails (its sender dropped) once the listening socket is closed.
    closed: Option<oneshot::Receiver<()>>,
    /// Duplicates of every accepted socket, to cut connections the way a
    /// sidecar that dies does (a graceful stop would let open connections
    /// carry on).
    connections: Arc<Mutex<Vec<std::net::TcpStream>>>,
    /// While killed: a socket bound to the address but not listening, so
    /// connections are refused and no listener bound to port 0 meanwhile
    /// can take the port.
    held: Option<TcpSocket>,
}

impl Server {
    /// A server of `routes` on `listener`, and the future that serves until
    /// [`stop`](Self::stop) (to be spawned).
    pub(super) fn new(
        listener: TcpListener,
        routes: Routes,
    ) -> (Server, impl Future<Output = ()> + Send + 'static) {
        let mut server = Server { shutdown: None, closed: None, connections: Arc::default(), held: None };
        let serve = server.serve(listener, routes);
        (server, serve)
    }

    /// Stops listening and cuts every open connection.
    pub(super) fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        for socket in self.connections.lock().drain(..) {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Stops, waits until the listening socket is closed, and holds `addr`.
    pub(super) async fn kill(&mut self, addr: SocketAddr) {
        self.stop();
        if let Some(closed) = self.closed.take() {
            // Err once the listener is dropped: that is the signal.
            let _ = closed.await;
        }
        if self.held.is_none() {
            self.held = hold(addr);
        }
        // A connection accepted just before the listener closed.
        self.stop();
    }

    /// Serves `routes` on `addr` again (killing the running server first),
    /// on the current Tokio runtime. Fails, naming `addr`, if another socket
    /// took the address while it was down.
    pub(super) async fn restart(&mut self, addr: SocketAddr, routes: Routes) -> io::Result<()> {
        self.kill(addr).await;
        let listener = match self.held.take() {
            Some(socket) => socket.listen(BACKLOG),
            None => TcpListener::bind(addr).await,
        }
        .map_err(|e| {
            io::Error::new(e.kind(), format!("the sidecar emulator cannot listen on {addr} again: {e}"))
        })?;
        tokio::spawn(self.serve(listener, routes));
        Ok(())
    }

    /// Serves `routes` on `listener` until the shutdown sender is used or
    /// dropped; `closed` fails once the listener is closed.
    fn serve(&mut self, listener: TcpListener, routes: Routes) -> impl Future<Output = ()> + Send + use<> {
        let (shutdown, rx) = oneshot::channel::<()>();
        let (listening, closed) = oneshot::channel::<()>();
        (self.shutdown, self.closed) = (Some(shutdown), Some(closed));
        let connections = self.connections.clone();
        async move {
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
        }
    }
}

/// A socket bound to `addr` that does not listen: connections to it are
/// refused, as to a free port, but the port is not handed out to others.
/// `None` if `addr` cannot be bound (taken already).
fn hold(addr: SocketAddr) -> Option<TcpSocket> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.ok()?;
    // As a listener's own bind: the port's closed connections may linger.
    #[cfg(unix)]
    socket.set_reuseaddr(true).ok()?;
    socket.bind(addr).ok()?;
    Some(socket)
}
