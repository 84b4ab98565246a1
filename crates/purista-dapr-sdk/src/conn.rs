//! The connection to the sidecar: one HTTP/2 channel, the API token on every
//! call, the request timeout, and how a failed call becomes an error.

use std::{fmt, future::Future, sync::Arc, time::Duration};

use dapr::dapr::proto::runtime::v1::dapr_client::DaprClient;
use purista_core::{Error, ErrorKind, Result};
use tonic::{
    Request, Response, Status,
    metadata::{AsciiMetadataValue, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

use crate::{
    API_TOKEN_HEADER, DaprConfig,
    config::normalize_endpoint,
    error::{from_status, kind_of},
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The generated Dapr client with the API token attached to every call.
pub type Client = DaprClient<InterceptedService<Channel, TokenInterceptor>>;

/// Adds `dapr-api-token` metadata (marked sensitive) to every request.
#[derive(Clone)]
pub struct TokenInterceptor {
    token: Option<AsciiMetadataValue>,
}

impl TokenInterceptor {
    /// The token as sensitive metadata; an error that does not show it if
    /// it cannot be sent.
    fn new(token: Option<&str>) -> Result<TokenInterceptor> {
        let Some(token) = token else { return Ok(TokenInterceptor { token: None }) };
        let mut value: AsciiMetadataValue = MetadataValue::try_from(token).map_err(|_| {
            Error::new(ErrorKind::InvalidArgument, "the Dapr API token is not a valid gRPC metadata value")
        })?;
        value.set_sensitive(true);
        Ok(TokenInterceptor { token: Some(value) })
    }
}

impl fmt::Debug for TokenInterceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenInterceptor").field("token", &self.token.as_ref().map(|_| "<redacted>")).finish()
    }
}

impl Interceptor for TokenInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.token {
            request.metadata_mut().insert(API_TOKEN_HEADER, token.clone());
        }
        Ok(request)
    }
}

/// A connection to the sidecar: one HTTP/2 channel, shared by clones.
#[derive(Clone, Debug)]
pub(crate) struct Connection {
    client: Client,
    endpoint: Arc<str>,
    timeout: Duration,
}

impl Connection {
    /// Dials the sidecar, retrying with backoff until `wait_for_sidecar`
    /// has passed.
    pub(crate) async fn open(config: &DaprConfig) -> Result<Connection> {
        let url = normalize_endpoint(&config.endpoint)?;
        let interceptor = TokenInterceptor::new(config.api_token.as_deref())?;
        let invalid =
            |e| Error::new(ErrorKind::InvalidArgument, format!("dapr endpoint {url:?}")).with_source(e);
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(invalid)?
            .connect_timeout(config.request_timeout)
            .tcp_nodelay(true);
        let channel = dial(&endpoint, &url, config.wait_for_sidecar).await?;
        // tonic refuses answers over 4 MiB by default, below what a sidecar
        // with a raised --max-body-size sends.
        let client = DaprClient::with_interceptor(channel, interceptor)
            .max_decoding_message_size(config.max_message_size);
        Ok(Connection { client, endpoint: url.into(), timeout: config.request_timeout })
    }

    /// The generated client (token attached), for RPCs this crate does not wrap.
    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    /// The sidecar's URL.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A request under the request timeout. The deadline travels as the
    /// `grpc-timeout` header, which tonic's channel enforces on this side too
    /// (and the sidecar on its side), so no second timer is set here.
    pub(crate) fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    /// Runs one RPC (its request made by [`request`](Self::request)); a
    /// failure is the error for `op` on `key`.
    pub(crate) async fn call<T, F, Fut>(&self, op: &str, key: Option<&str>, rpc: F) -> Result<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        match rpc(self.client.clone()).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(self.failed(status, op, key)),
        }
    }

    /// The error for a failed RPC; a missed deadline names the sidecar and
    /// the timeout.
    pub(crate) fn failed(&self, status: Status, op: &str, key: Option<&str>) -> Error {
        if kind_of(&status) != ErrorKind::Timeout {
            return from_status(status, op, key);
        }
        let message =
            format!("dapr {op}: the sidecar at {} did not answer within {:?}", self.endpoint, self.timeout);
        let source = from_status(status, op, key);
        let error = Error::new(ErrorKind::Timeout, message).with_source(source);
        match key {
            Some(k) => error.with_key(k),
            None => error,
        }
    }
}

/// Connects to `endpoint`, retrying with backoff for up to `wait`; then
/// `Unavailable`, naming `url` and the attempts.
async fn dial(endpoint: &Endpoint, url: &str, wait: Duration) -> Result<Channel> {
    let started = tokio::time::Instant::now();
    let deadline = started + wait;
    let mut delay = Duration::from_millis(25);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        // One attempt never runs past the deadline (a host that drops
        // packets would otherwise hold it for the whole connect timeout).
        let left =
            deadline.saturating_duration_since(tokio::time::Instant::now()).max(Duration::from_millis(100));
        let attempt = match tokio::time::timeout(left, endpoint.connect()).await {
            Ok(result) => result.map_err(|e| Box::new(e) as BoxError),
            Err(_) => Err(Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut)) as BoxError),
        };
        let error = match attempt {
            Ok(channel) => {
                tracing::debug!(endpoint = %url, attempts, "connected to the dapr sidecar");
                return Ok(channel);
            }
            Err(e) => e,
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            let message = format!(
                "dapr sidecar at {url} is not reachable after {attempts} attempts in {:?}",
                now - started
            );
            return Err(Error::new(ErrorKind::Unavailable, message).with_source(error));
        }
        tracing::debug!(endpoint = %url, attempts, "dapr sidecar not reachable yet, retrying");
        tokio::time::sleep(delay.min(deadline - now)).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}
