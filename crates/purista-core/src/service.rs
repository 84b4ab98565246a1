//! A small service runtime: named, versioned services whose command handlers
//! reach state only through `context.states`.

use std::{collections::HashMap, fmt, future::Future, pin::Pin, sync::Arc};

use serde::{Serialize, de::DeserializeOwned};

use crate::{DefaultStateStore, Error, Json, StateStore};

/// A service's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The service name.
    pub name: String,
    /// The service version.
    pub version: String,
}

/// What a handler gets with each call.
#[derive(Clone)]
pub struct Context {
    /// The only way a handler touches state (PURISTA's `context.states`).
    pub states: Arc<dyn StateStore>,
    /// Which service is running the handler.
    pub service: Arc<ServiceInfo>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("states", &self.states.name())
            .field("service", &self.service)
            .finish()
    }
}

/// A handler's failure, with an HTTP-valued status (PURISTA's `HandledError`).
#[derive(Debug)]
pub struct HandlerError {
    status: u16,
    message: String,
    source: Option<Error>,
}

impl HandlerError {
    /// A failure the handler reports on purpose (`429 rate limit exceeded` ...).
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        HandlerError { status, message: message.into(), source: None }
    }
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }
    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The state store error behind this failure, if any.
    pub fn store_error(&self) -> Option<&Error> {
        self.source.as_ref()
    }
}

impl From<Error> for HandlerError {
    fn from(err: Error) -> Self {
        HandlerError { status: err.status(), message: err.to_string(), source: Some(err) }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for HandlerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Handler = Arc<dyn Fn(Context, Json) -> BoxFuture<Result<Json, HandlerError>> + Send + Sync>;

/// Builds a [`Service`].
pub struct ServiceBuilder {
    info: ServiceInfo,
    states: Option<Arc<dyn StateStore>>,
    /// Whether the service owns its store (and so destroys it).
    owns_store: bool,
    namespaced: bool,
    commands: HashMap<String, Handler>,
}

impl fmt::Debug for ServiceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceBuilder")
            .field("info", &self.info)
            .field("namespaced", &self.namespaced)
            .finish()
    }
}

impl ServiceBuilder {
    /// Uses `store` for this service's state (the only line that changes
    /// when switching backends). The service owns it: [`Service::destroy`]
    /// destroys it.
    pub fn state_store(mut self, store: impl StateStore + 'static) -> Self {
        self.states = Some(Arc::new(store));
        self.owns_store = true;
        self
    }

    /// Uses a store shared with other services; [`Service::destroy`] leaves
    /// it open for them (destroy it yourself once every service is done).
    pub fn shared_state_store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.states = Some(store);
        self.owns_store = false;
        self
    }

    /// Keeps this service's keys under `<name>:<version>:` so that services
    /// sharing a store cannot collide. Off by default: keys stay shared and
    /// readable by PURISTA services using the same names.
    pub fn namespace_states(mut self, on: bool) -> Self {
        self.namespaced = on;
        self
    }

    /// Registers a command handler taking payload `P` and answering `R`.
    pub fn command<P, R, F, Fut>(mut self, name: impl Into<String>, handler: F) -> Self
    where
        P: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(Context, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Handler = Arc::new(move |ctx, payload: Json| {
            let handler = handler.clone();
            Box::pin(async move {
                let payload = payload.decode::<P>().map_err(|e| HandlerError::new(400, e.to_string()))?;
                let answer = handler(ctx, payload).await?;
                Ok(Json::encode(&answer)?)
            })
        });
        self.commands.insert(name.into(), erased);
        self
    }

    /// Finishes the service; with no store given, the in-memory default store.
    pub fn build(self) -> Service {
        let owns_store = self.owns_store || self.states.is_none();
        let store = self.states.unwrap_or_else(|| Arc::new(DefaultStateStore::new()));
        let states = if self.namespaced {
            store.scoped(&format!("{}:{}:", self.info.name, self.info.version))
        } else {
            store
        };
        Service { info: Arc::new(self.info), states, owns_store, commands: self.commands }
    }
}

/// A running service: a name, a version, a state store and command handlers.
pub struct Service {
    info: Arc<ServiceInfo>,
    states: Arc<dyn StateStore>,
    owns_store: bool,
    commands: HashMap<String, Handler>,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("info", &self.info)
            .field("states", &self.states.name())
            .field("commands", &self.commands.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Service {
    /// Starts building a service.
    pub fn builder(name: impl Into<String>, version: impl Into<String>) -> ServiceBuilder {
        ServiceBuilder {
            info: ServiceInfo { name: name.into(), version: version.into() },
            states: None,
            owns_store: false,
            namespaced: false,
            commands: HashMap::new(),
        }
    }

    /// The service's identity.
    pub fn info(&self) -> &ServiceInfo {
        &self.info
    }

    /// The store handlers see as `context.states` (namespaced if configured).
    pub fn states(&self) -> &Arc<dyn StateStore> {
        &self.states
    }

    /// Runs command `name` with `payload`.
    pub async fn invoke<P, R>(&self, name: &str, payload: &P) -> Result<R, HandlerError>
    where
        P: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let handler = self.commands.get(name).ok_or_else(|| {
            HandlerError::new(404, format!("service {} has no command {name:?}", self.info.name))
        })?;
        let ctx = Context { states: self.states.clone(), service: self.info.clone() };
        let payload = Json::encode(payload).map_err(|e| HandlerError::new(400, e.to_string()))?;
        let answer = handler(ctx, payload).await?;
        answer.decode().map_err(|e| HandlerError::new(500, e.to_string()))
    }

    /// Stops the service and destroys its state store if the service owns
    /// it; a store given with [`ServiceBuilder::shared_state_store`] stays
    /// open for the services that share it.
    pub async fn destroy(self) -> Result<(), Error> {
        if self.owns_store { self.states.destroy().await } else { Ok(()) }
    }
}
