//! Building a store: servers, credentials, TLS, the bucket and its
//! settings; then one connection, the bucket opened, and what it supports.

use std::{fmt, path::PathBuf, sync::Arc};

use async_nats::{Client, ConnectOptions, ServerAddr};
use purista_core::{
    Error, ErrorKind, Result, StoreConfig,
    backend::{Combiner, Handle},
};

use crate::{
    BucketSettings, DEFAULT_BUCKET, NatsStateStore, Storage, batch_get, bucket, reads, store::Inner,
};

/// What [`remove`](purista_core::StateStore::remove) leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RemoveMode {
    /// A `DEL` marker on top of the key's history (what PURISTA and
    /// `kv.delete` do): cheap, and earlier revisions stay while the bucket's
    /// history keeps them.
    #[default]
    Delete,
    /// A `PURGE` marker that rolls up the key's history (`kv.purge`):
    /// earlier revisions are gone from the server. Transactions always
    /// write `DEL` markers (rollups are not allowed in atomic batches).
    Purge,
}

#[derive(Clone, Default)]
enum Auth {
    #[default]
    None,
    Token(String),
    UserPassword(String, String),
    CredentialsFile(PathBuf),
}

/// Builds a [`NatsStateStore`]; see [`NatsStateStore::builder`].
///
/// `Debug` shows which kind of credentials is set, never the secret itself.
#[derive(Default)]
pub struct NatsStateStoreBuilder {
    servers: Vec<String>,
    options: Option<ConnectOptions>,
    client: Option<Client>,
    auth: Auth,
    require_tls: bool,
    root_certificates: Vec<PathBuf>,
    client_certificate: Option<(PathBuf, PathBuf)>,
    bucket: Option<String>,
    settings: BucketSettings,
    chosen: bucket::Chosen,
    update_bucket: bool,
    remove_mode: RemoveMode,
    replica_reads: bool,
    config: StoreConfig,
}

impl fmt::Debug for NatsStateStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            Auth::None => "none",
            Auth::Token(_) => "token",
            Auth::UserPassword(..) => "user and password",
            Auth::CredentialsFile(_) => "credentials file",
        };
        f.debug_struct("NatsStateStoreBuilder")
            .field("servers", &self.servers.len())
            .field("own_options", &self.options.is_some())
            .field("client", &self.client.is_some())
            .field("auth", &auth)
            .field("require_tls", &self.require_tls)
            .field("bucket", &self.bucket_name())
            .field("settings", &self.settings)
            .field("update_bucket", &self.update_bucket)
            .field("remove_mode", &self.remove_mode)
            .field("replica_reads", &self.replica_reads)
            .field("config", &self.config)
            .finish()
    }
}

impl NatsStateStoreBuilder {
    /// Adds a seed server URL (`nats://host:4222`, `tls://...`); call again
    /// for several. Default: `nats://127.0.0.1:4222`.
    pub fn server(mut self, url: impl Into<String>) -> Self {
        self.servers.push(url.into());
        self
    }
    /// Adds several seed server URLs.
    pub fn servers<I: IntoIterator<Item = S>, S: Into<String>>(mut self, urls: I) -> Self {
        self.servers.extend(urls.into_iter().map(Into::into));
        self
    }
    /// Starts from these connection options (timeouts, callbacks, nkeys ...);
    /// the credential and TLS settings of this builder are applied on top.
    pub fn connect_options(mut self, options: ConnectOptions) -> Self {
        self.options = Some(options);
        self
    }
    /// Uses a client the application already has (no new connection;
    /// [`destroy`](purista_core::StateStore::destroy) leaves it open).
    pub fn client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }
    /// Authenticates with a token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.auth = Auth::Token(token.into());
        self
    }
    /// Authenticates with user and password.
    pub fn user_and_password(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Auth::UserPassword(user.into(), password.into());
        self
    }
    /// Authenticates with a `.creds` file (JWT and nkey seed).
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.auth = Auth::CredentialsFile(path.into());
        self
    }
    /// Requires TLS.
    pub fn require_tls(mut self, on: bool) -> Self {
        self.require_tls = on;
        self
    }
    /// Trusts the CA certificates in this PEM file.
    pub fn root_certificate(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_certificates.push(path.into());
        self
    }
    /// Presents this client certificate and key (PEM files).
    pub fn client_certificate(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_certificate = Some((cert.into(), key.into()));
        self
    }
    /// The bucket (default [`DEFAULT_BUCKET`]); `[a-zA-Z0-9_-]+`.
    pub fn bucket(mut self, name: impl Into<String>) -> Self {
        self.bucket = Some(name.into());
        self
    }
    /// Settings for the bucket when it is created (with
    /// [`update_existing_bucket`](Self::update_existing_bucket), all of them
    /// count as chosen).
    pub fn bucket_settings(mut self, settings: BucketSettings) -> Self {
        self.settings = settings;
        self.chosen = bucket::Chosen::ALL;
        self
    }
    /// Revisions kept per key, when the bucket is created.
    pub fn history(mut self, history: i64) -> Self {
        self.settings.history = history;
        self.chosen.history = true;
        self
    }
    /// Replicas, when the bucket is created.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.settings.replicas = replicas;
        self.chosen.replicas = true;
        self
    }
    /// File or memory storage, when the bucket is created.
    pub fn storage(mut self, storage: Storage) -> Self {
        self.settings.storage = storage;
        self
    }
    /// The largest value in bytes, when the bucket is created.
    pub fn max_value_size(mut self, bytes: i32) -> Self {
        self.settings.max_value_size = Some(bytes);
        self.chosen.max_value_size = true;
        self
    }
    /// Updates an existing bucket too (by default it is used as it is):
    /// switches per-key TTL and atomic publish on, and applies the settings
    /// chosen on this builder ([`history`](Self::history),
    /// [`replicas`](Self::replicas), [`max_value_size`](Self::max_value_size),
    /// or all of [`bucket_settings`](Self::bucket_settings)). Whatever was not
    /// chosen stays as the bucket has it; storage never changes.
    pub fn update_existing_bucket(mut self, on: bool) -> Self {
        self.update_bucket = on;
        self
    }
    /// Delete marker or purge on remove (default [`RemoveMode::Delete`]).
    pub fn remove_mode(mut self, mode: RemoveMode) -> Self {
        self.remove_mode = mode;
        self
    }
    /// Reads (`get`, `get_entry`, `get_state`) as JetStream direct gets on a
    /// bucket with more than one replica too: any replica, or a mirror of
    /// the bucket, answers, which spreads reads over the replicas but **may
    /// read a value older than one already acknowledged** (reads are then
    /// not linearizable). Default off: on a replicated bucket reads go
    /// through the stream leader; a one-replica bucket uses direct gets
    /// either way (its only replica is the leader).
    pub fn replica_reads(mut self, on: bool) -> Self {
        self.replica_reads = on;
        self
    }
    /// The base config (enable switches, key prefix).
    pub fn store_config(mut self, config: StoreConfig) -> Self {
        self.config = config;
        self
    }

    fn bucket_name(&self) -> &str {
        self.bucket.as_deref().unwrap_or(DEFAULT_BUCKET)
    }

    async fn connect_client(&mut self) -> Result<(Client, bool)> {
        if let Some(client) = self.client.take() {
            return Ok((client, false));
        }
        let mut options = self.options.take().unwrap_or_default();
        options = match std::mem::take(&mut self.auth) {
            Auth::None => options,
            Auth::Token(token) => options.token(token),
            Auth::UserPassword(user, password) => options.user_and_password(user, password),
            Auth::CredentialsFile(path) => options.credentials_file(&path).await.map_err(|e| {
                Error::new(ErrorKind::InvalidArgument, "cannot read the NATS credentials file").with_source(e)
            })?,
        };
        if self.require_tls {
            options = options.require_tls(true);
        }
        for path in self.root_certificates.drain(..) {
            options = options.add_root_certificates(path);
        }
        if let Some((cert, key)) = self.client_certificate.take() {
            options = options.add_client_certificate(cert, key);
        }
        let urls = if self.servers.is_empty() {
            vec!["nats://127.0.0.1:4222".to_owned()]
        } else {
            self.servers.clone()
        };
        let mut addrs = Vec::with_capacity(urls.len());
        for url in &urls {
            // The URL may hold credentials: never put it in the message.
            let addr: ServerAddr = url.parse().map_err(|e| {
                Error::new(ErrorKind::InvalidArgument, "a NATS server URL does not parse").with_source(e)
            })?;
            addrs.push(addr);
        }
        let client = options.connect(addrs).await.map_err(|e| {
            let kind = match e.kind() {
                async_nats::ConnectErrorKind::TimedOut => ErrorKind::Timeout,
                _ => ErrorKind::Unavailable,
            };
            Error::new(kind, format!("cannot connect to NATS ({})", e.kind())).with_source(e)
        })?;
        Ok((client, true))
    }

    /// Connects (once, up front), opens or creates the bucket and finds out
    /// what the server and bucket support.
    pub async fn connect(mut self) -> Result<NatsStateStore> {
        let bucket = self.bucket_name().to_owned();
        let (client, owned) = self.connect_client().await?;
        let result = bucket::open(&client, &bucket, &self.settings, self.chosen, self.update_bucket).await;
        let opened = match result {
            Ok(opened) => opened,
            Err(e) => {
                if owned {
                    let _ = client.drain().await;
                }
                return Err(e);
            }
        };
        let caps = opened.capabilities(client.server_info().max_payload);
        let bucket::Opened { js, kv, missing } = opened;
        for reason in missing.ttl.iter().chain(missing.transactions.iter()) {
            tracing::warn!(bucket = %bucket, "{reason}");
        }
        let info = &kv.stream.cached_info().config;
        if info.mirror.is_some() {
            tracing::warn!(
                bucket = %bucket,
                "the bucket is a mirror: reads see what the mirror has, which trails the origin that takes the writes"
            );
        }
        Ok(NatsStateStore {
            inner: Arc::new(Inner {
                history: info.max_messages_per_subject,
                marker_ttl: bucket::marker_ttl(&kv),
                // Decided once, from the stream as it is now.
                reads: reads::ReadPath::choose(info, self.replica_reads),
                batch_get: batch_get::api_subject(&client, &kv),
                counters: Combiner::default(),
                read_prefix: kv.prefix.clone(),
                publish_prefix: kv.put_prefix.clone().unwrap_or_else(|| kv.prefix.clone()),
                js,
                kv,
                client,
                owned,
                bucket,
                remove_mode: self.remove_mode,
                caps,
                missing,
            }),
            config: self.config,
            handle: Handle::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_debug_hides_secrets() {
        let b = NatsStateStore::builder()
            .server("nats://user:hunter2@127.0.0.1:4222")
            .token("s3cr3t-token")
            .user_and_password("bob", "hunter2");
        let debug = format!("{b:?}");
        assert!(!debug.contains("hunter2") && !debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("user and password"));
    }
}
