//! The emulated `dapr.proto.runtime.v1.Dapr` service and its state.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use chrono::{DateTime, SecondsFormat, Utc};
use dapr::dapr::proto::{
    common::v1::{self as common, StateItem, state_options::StateConcurrency},
    runtime::v1::{
        self as rt,
        dapr_server::{Dapr, DaprServer},
    },
};
use parking_lot::Mutex;
use prost::Message;
use tokio::sync::watch;
use tonic::{
    Request, Response, Status, Streaming,
    codegen::tokio_stream::Empty,
    service::{Routes, interceptor::InterceptedService},
};

use crate::{API_TOKEN_HEADER, TTL_EXPIRE_TIME_KEY, TTL_KEY};

/// Dapr's separator between app id and key.
const SEPARATOR: &str = "||";
/// Dapr's `state.ETagError` messages.
const MISMATCH: &str = "possible etag mismatch. error from state store";
const INVALID_ETAG: &str = "invalid etag value";

/// Every store, and the version counter ETags come from.
#[derive(Debug)]
pub(crate) struct State {
    stores: HashMap<String, Store>,
    version: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    items: HashMap<String, Item>,
}

#[derive(Debug, Clone)]
struct Item {
    value: Vec<u8>,
    version: u64,
    expires: Option<SystemTime>,
}

impl Item {
    fn live(&self, now: SystemTime) -> bool {
        self.expires.is_none_or(|t| t > now)
    }

    fn metadata(&self) -> HashMap<String, String> {
        self.expires
            .map(|t| {
                let t = DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Secs, true);
                HashMap::from([(TTL_EXPIRE_TIME_KEY.to_string(), t)])
            })
            .unwrap_or_default()
    }
}

impl State {
    pub(crate) fn new(stores: HashMap<String, Store>) -> Self {
        State { stores, version: 0 }
    }

    pub(crate) fn stored_keys(&self, store: &str) -> Vec<String> {
        let now = SystemTime::now();
        let mut keys: Vec<String> = self
            .stores
            .get(store)
            .map(|s| s.items.iter().filter(|(_, i)| i.live(now)).map(|(k, _)| k.clone()).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        keys
    }

    fn store(&mut self, name: &str) -> Result<&mut Store, Status> {
        if self.stores.is_empty() {
            return Err(Status::failed_precondition("state store is not configured"));
        }
        self.stores
            .get_mut(name)
            .ok_or_else(|| Status::invalid_argument(format!("state store {name} is not found")))
    }
}

/// Why a state operation failed inside the store.
#[derive(Debug)]
enum Fail {
    Mismatch,
    InvalidEtag,
    Other(String),
}

impl Fail {
    fn message(&self) -> &str {
        match self {
            Fail::Mismatch => MISMATCH,
            Fail::InvalidEtag => INVALID_ETAG,
            Fail::Other(m) => m,
        }
    }

    /// How the sidecar answers a failed single-shot operation
    /// (`stateErrorResponse`): mismatch `Aborted`, invalid ETag
    /// `InvalidArgument`, anything else `Internal`.
    fn status(&self, context: &str) -> Status {
        let message = format!("{context}: {}", self.message());
        match self {
            Fail::Mismatch => Status::aborted(message),
            Fail::InvalidEtag => Status::invalid_argument(message),
            Fail::Other(_) => Status::internal(message),
        }
    }
}

/// A write or delete, validated and keyed, ready to be checked and applied.
#[derive(Debug)]
struct Change {
    key: String,
    etag: Option<u64>,
    first_write: bool,
    /// `None` for a delete.
    write: Option<(Vec<u8>, Option<Duration>)>,
}

fn parse_etag(etag: Option<&common::Etag>) -> Result<Option<u64>, Fail> {
    match etag {
        None => Ok(None),
        Some(e) if e.value.is_empty() => Ok(None),
        Some(e) => e.value.parse().map(Some).map_err(|_| Fail::InvalidEtag),
    }
}

/// Dapr's `utils.ParseTTL`, then the in-memory component: a positive value
/// expires, `0` and `-1` do not, anything else is an error.
fn parse_ttl(metadata: &HashMap<String, String>) -> Result<Option<Duration>, Fail> {
    let Some(raw) = metadata.get(TTL_KEY).filter(|v| !v.is_empty()) else { return Ok(None) };
    let secs: i64 =
        raw.parse().map_err(|e| Fail::Other(format!("incorrect value for metadata '{TTL_KEY}': {e}")))?;
    if !(-1..=i64::from(i32::MAX)).contains(&secs) {
        return Err(Fail::Other(format!("incorrect value for {TTL_KEY} {secs}")));
    }
    Ok((secs > 0).then(|| Duration::from_secs(secs.unsigned_abs())))
}

fn first_write(options: Option<&common::StateOptions>) -> bool {
    options.is_some_and(|o| o.concurrency == StateConcurrency::ConcurrencyFirstWrite as i32)
}

/// Checks one condition against the key's live version.
fn check(current: Option<u64>, change: &Change) -> Result<(), Fail> {
    match change.etag {
        Some(tag) if current != Some(tag) => Err(Fail::Mismatch),
        None if change.first_write && current.is_some() => Err(Fail::Mismatch),
        _ => Ok(()),
    }
}

impl Store {
    fn live(&self, key: &str, now: SystemTime) -> Option<&Item> {
        self.items.get(key).filter(|i| i.live(now))
    }

    /// Checks every change, in order, against the state the earlier ones
    /// leave behind; then applies them all. Nothing is applied on failure.
    fn apply(&mut self, changes: Vec<Change>, version: &mut u64) -> Result<(), Fail> {
        let now = SystemTime::now();
        let mut overlay: HashMap<&str, Option<u64>> = HashMap::new();
        let mut next = *version;
        for change in &changes {
            let current = match overlay.get(change.key.as_str()) {
                Some(v) => *v,
                None => self.live(&change.key, now).map(|i| i.version),
            };
            check(current, change)?;
            let after = change.write.as_ref().map(|_| {
                next += 1;
                next
            });
            overlay.insert(&change.key, after);
        }
        drop(overlay);
        self.items.retain(|_, i| i.live(now));
        for change in changes {
            match change.write {
                Some((value, ttl)) => {
                    *version += 1;
                    let item = Item { value, version: *version, expires: ttl.map(|t| now + t) };
                    self.items.insert(change.key, item);
                }
                None => {
                    self.items.remove(&change.key);
                }
            }
        }
        Ok(())
    }
}

/// The service: state RPCs over [`State`], everything else `Unimplemented`.
#[derive(Debug, Clone)]
pub(crate) struct Emulator {
    app_id: Arc<str>,
    state: Arc<Mutex<State>>,
    transactions: bool,
    delay: Duration,
    max_body_size: usize,
    /// `true` while the sidecar is stalled ([`Sidecar::stall`](super::Sidecar::stall)).
    stalled: watch::Receiver<bool>,
}

impl Emulator {
    pub(crate) fn new(
        app_id: String,
        state: Arc<Mutex<State>>,
        transactions: bool,
        delay: Duration,
        max_body_size: usize,
        stalled: watch::Receiver<bool>,
    ) -> Self {
        Emulator { app_id: app_id.into(), state, transactions, delay, max_body_size, stalled }
    }

    /// daprd's receive limit, with grpc-go's answer.
    fn receive<T: Message>(&self, request: Request<T>) -> Result<T, Status> {
        let len = request.get_ref().encoded_len();
        if len > self.max_body_size {
            return Err(Status::resource_exhausted(format!(
                "grpc: received message larger than max ({len} vs. {})",
                self.max_body_size
            )));
        }
        Ok(request.into_inner())
    }

    /// daprd's send limit, with grpc-go's answer.
    fn send<T: Message>(&self, response: T) -> Result<Response<T>, Status> {
        let len = response.encoded_len();
        if len > self.max_body_size {
            return Err(Status::resource_exhausted(format!(
                "grpc: trying to send message larger than max ({len} vs. {})",
                self.max_body_size
            )));
        }
        Ok(Response::new(response))
    }

    /// Runs a state call's `work` after the configured delay, once the
    /// sidecar is not stalled. A call held by a stall waits on a task of its
    /// own, so it still runs when the stall ends even if its client gave up
    /// or its deadline passed meanwhile, as a daprd whose state component
    /// hangs may still apply a call its client gave up on: the client cannot
    /// know whether such a call was applied.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Emulator) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let mut stalled = self.stalled.clone();
        if !*stalled.borrow_and_update() {
            return work(self);
        }
        let this = self.clone();
        let held = tokio::spawn(async move {
            // Err: the sidecar was dropped while stalled.
            stalled.wait_for(|s| !*s).await.map_err(|_| Status::unavailable("the sidecar is shut down"))?;
            work(&this)
        });
        held.await.map_err(|e| Status::internal(format!("a held state call failed: {e}")))?
    }

    /// `<app-id>||<key>`, refusing what Dapr's state loader refuses.
    fn stored_key(&self, key: &str) -> Result<String, Status> {
        if key.is_empty() {
            return Err(Status::invalid_argument("key cannot be empty"));
        }
        if key.contains(SEPARATOR) {
            return Err(Status::invalid_argument(format!(
                "input key/keyPrefix '{key}' can't contain '{SEPARATOR}'"
            )));
        }
        Ok(format!("{}{SEPARATOR}{key}", self.app_id))
    }

    /// Validates a state item into a change (`write` for a save).
    fn change(&self, item: StateItem, write: bool) -> Result<Result<Change, Fail>, Status> {
        let key = self.stored_key(&item.key)?;
        let change = (|| {
            let etag = parse_etag(item.etag.as_ref())?;
            let write = if write { Some((item.value, parse_ttl(&item.metadata)?)) } else { None };
            Ok(Change { key, etag, first_write: first_write(item.options.as_ref()), write })
        })();
        Ok(change)
    }

    fn get_item(&self, store: &str, key: &str) -> Result<Option<Item>, Status> {
        let key = self.stored_key(key)?;
        let mut state = self.state.lock();
        let store = state.store(store)?;
        Ok(store.live(&key, SystemTime::now()).cloned())
    }
}

fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented by the purista-dapr-sdk emulator"))
}

/// Checks `dapr-api-token` like the sidecar's API token middleware.
fn token_check(expected: Option<String>) -> impl tonic::service::Interceptor + Clone {
    move |request: Request<()>| -> Result<Request<()>, Status> {
        let Some(expected) = expected.as_deref() else { return Ok(request) };
        match request.metadata().get(API_TOKEN_HEADER) {
            None => Err(Status::unauthenticated("missing api token in request metadata")),
            Some(token) if token.as_bytes() == expected.as_bytes() => Ok(request),
            Some(_) => Err(Status::unauthenticated("authentication error: api token mismatch")),
        }
    }
}

/// The gRPC service behind the token check, plus the HTTP health check.
pub(crate) fn routes(emulator: Emulator, api_token: Option<String>) -> Routes {
    // The size limit is the handlers' (`receive`, `send`), with daprd's
    // status code: tonic's own limits answer `OutOfRange`.
    let server =
        DaprServer::new(emulator).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX);
    let grpc = InterceptedService::new(server, token_check(api_token));
    let router = Routes::new(grpc)
        .into_axum_router()
        .route("/v1.0/healthz/outbound", axum::routing::get(|| async { axum::http::StatusCode::NO_CONTENT }));
    Routes::from(router)
}

/// Implements the state RPCs given as a block, and every other RPC of the
/// generated trait (which has no default methods) as `Unimplemented`.
macro_rules! dapr_service {
    ({ $($implemented:tt)* } $($name:ident($req:ty) -> $resp:ty;)*) => {
        #[tonic::async_trait]
        impl Dapr for Emulator {
            $($implemented)*
            $(
                async fn $name(&self, _: Request<$req>) -> Result<Response<$resp>, Status> {
                    Err(unimplemented(stringify!($name)))
                }
            )*
        }
    };
}

dapr_service! {
    {
        type SubscribeTopicEventsAlpha1Stream = Empty<Result<rt::SubscribeTopicEventsResponseAlpha1, Status>>;
        type SubscribeConfigurationAlpha1Stream = Empty<Result<rt::SubscribeConfigurationResponse, Status>>;
        type SubscribeConfigurationStream = Empty<Result<rt::SubscribeConfigurationResponse, Status>>;
        type EncryptAlpha1Stream = Empty<Result<rt::EncryptResponse, Status>>;
        type DecryptAlpha1Stream = Empty<Result<rt::DecryptResponse, Status>>;

        async fn get_state(&self, request: Request<rt::GetStateRequest>) -> Result<Response<rt::GetStateResponse>, Status> {
            let req = self.receive(request)?;
            let item = self.run(move |e| e.get_item(&req.store_name, &req.key)).await?;
            let response = match item {
                Some(i) => rt::GetStateResponse { metadata: i.metadata(), etag: i.version.to_string(), data: i.value },
                None => rt::GetStateResponse::default(),
            };
            self.send(response)
        }

        async fn get_bulk_state(
            &self,
            request: Request<rt::GetBulkStateRequest>,
        ) -> Result<Response<rt::GetBulkStateResponse>, Status> {
            let req = self.receive(request)?;
            let items = self.run(move |e| {
                let keys = req.keys.iter().map(|k| e.stored_key(k)).collect::<Result<Vec<_>, _>>()?;
                let now = SystemTime::now();
                let mut state = e.state.lock();
                let store = state.store(&req.store_name)?;
                Ok(req
                    .keys
                    .into_iter()
                    .zip(keys)
                    .map(|(key, stored)| match store.live(&stored, now) {
                        Some(i) => rt::BulkStateItem {
                            key,
                            data: i.value.clone(),
                            etag: i.version.to_string(),
                            error: String::new(),
                            metadata: i.metadata(),
                        },
                        None => rt::BulkStateItem { key, ..Default::default() },
                    })
                    .collect())
            })
            .await?;
            self.send(rt::GetBulkStateResponse { items })
        }

        async fn save_state(&self, request: Request<rt::SaveStateRequest>) -> Result<Response<()>, Status> {
            let req = self.receive(request)?;
            self.run(move |e| {
                let context = format!("failed saving state in state store {}", req.store_name);
                e.state.lock().store(&req.store_name)?;
                let changes = req
                    .states
                    .into_iter()
                    .map(|item| e.change(item, true))
                    .collect::<Result<Result<Vec<_>, Fail>, Status>>()?
                    .map_err(|f| f.status(&context))?;
                let mut state = e.state.lock();
                let State { stores, version } = &mut *state;
                let store = stores.get_mut(&req.store_name).ok_or_else(|| Status::internal("store vanished"))?;
                store.apply(changes, version).map_err(|f| f.status(&context))?;
                Ok(Response::new(()))
            })
            .await
        }

        async fn delete_state(&self, request: Request<rt::DeleteStateRequest>) -> Result<Response<()>, Status> {
            let req = self.receive(request)?;
            self.run(move |e| {
                let context = format!("failed deleting state with key {}", req.key);
                let item = StateItem { key: req.key, etag: req.etag, options: req.options, ..Default::default() };
                e.delete(&req.store_name, vec![item], &context)
            })
            .await
        }

        async fn delete_bulk_state(
            &self,
            request: Request<rt::DeleteBulkStateRequest>,
        ) -> Result<Response<()>, Status> {
            let req = self.receive(request)?;
            self.run(move |e| {
                let context = format!("failed deleting state in state store {}", req.store_name);
                e.delete(&req.store_name, req.states, &context)
            })
            .await
        }

        async fn execute_state_transaction(
            &self,
            request: Request<rt::ExecuteStateTransactionRequest>,
        ) -> Result<Response<()>, Status> {
            let req = self.receive(request)?;
            self.run(move |e| e.transact(req)).await
        }
    }
    invoke_service(rt::InvokeServiceRequest) -> common::InvokeResponse;
    query_state_alpha1(rt::QueryStateRequest) -> rt::QueryStateResponse;
    publish_event(rt::PublishEventRequest) -> ();
    bulk_publish_event_alpha1(rt::BulkPublishRequest) -> rt::BulkPublishResponse;
    bulk_publish_event(rt::BulkPublishRequest) -> rt::BulkPublishResponse;
    subscribe_topic_events_alpha1(Streaming<rt::SubscribeTopicEventsRequestAlpha1>) -> Self::SubscribeTopicEventsAlpha1Stream;
    invoke_binding(rt::InvokeBindingRequest) -> rt::InvokeBindingResponse;
    get_secret(rt::GetSecretRequest) -> rt::GetSecretResponse;
    get_bulk_secret(rt::GetBulkSecretRequest) -> rt::GetBulkSecretResponse;
    register_actor_timer(rt::RegisterActorTimerRequest) -> ();
    unregister_actor_timer(rt::UnregisterActorTimerRequest) -> ();
    register_actor_reminder(rt::RegisterActorReminderRequest) -> ();
    unregister_actor_reminder(rt::UnregisterActorReminderRequest) -> ();
    unregister_actor_reminders_by_type(rt::UnregisterActorRemindersByTypeRequest) -> rt::UnregisterActorRemindersByTypeResponse;
    list_actor_reminders(rt::ListActorRemindersRequest) -> rt::ListActorRemindersResponse;
    get_actor_state(rt::GetActorStateRequest) -> rt::GetActorStateResponse;
    get_actor_reminder(rt::GetActorReminderRequest) -> rt::GetActorReminderResponse;
    execute_actor_state_transaction(rt::ExecuteActorStateTransactionRequest) -> ();
    invoke_actor(rt::InvokeActorRequest) -> rt::InvokeActorResponse;
    get_configuration_alpha1(rt::GetConfigurationRequest) -> rt::GetConfigurationResponse;
    get_configuration(rt::GetConfigurationRequest) -> rt::GetConfigurationResponse;
    subscribe_configuration_alpha1(rt::SubscribeConfigurationRequest) -> Self::SubscribeConfigurationAlpha1Stream;
    subscribe_configuration(rt::SubscribeConfigurationRequest) -> Self::SubscribeConfigurationStream;
    unsubscribe_configuration_alpha1(rt::UnsubscribeConfigurationRequest) -> rt::UnsubscribeConfigurationResponse;
    unsubscribe_configuration(rt::UnsubscribeConfigurationRequest) -> rt::UnsubscribeConfigurationResponse;
    try_lock_alpha1(rt::TryLockRequest) -> rt::TryLockResponse;
    unlock_alpha1(rt::UnlockRequest) -> rt::UnlockResponse;
    encrypt_alpha1(Streaming<rt::EncryptRequest>) -> Self::EncryptAlpha1Stream;
    decrypt_alpha1(Streaming<rt::DecryptRequest>) -> Self::DecryptAlpha1Stream;
    get_metadata(rt::GetMetadataRequest) -> rt::GetMetadataResponse;
    set_metadata(rt::SetMetadataRequest) -> ();
    subtle_get_key_alpha1(rt::SubtleGetKeyRequest) -> rt::SubtleGetKeyResponse;
    subtle_encrypt_alpha1(rt::SubtleEncryptRequest) -> rt::SubtleEncryptResponse;
    subtle_decrypt_alpha1(rt::SubtleDecryptRequest) -> rt::SubtleDecryptResponse;
    subtle_wrap_key_alpha1(rt::SubtleWrapKeyRequest) -> rt::SubtleWrapKeyResponse;
    subtle_unwrap_key_alpha1(rt::SubtleUnwrapKeyRequest) -> rt::SubtleUnwrapKeyResponse;
    subtle_sign_alpha1(rt::SubtleSignRequest) -> rt::SubtleSignResponse;
    subtle_verify_alpha1(rt::SubtleVerifyRequest) -> rt::SubtleVerifyResponse;
    start_workflow_alpha1(rt::StartWorkflowRequest) -> rt::StartWorkflowResponse;
    get_workflow_alpha1(rt::GetWorkflowRequest) -> rt::GetWorkflowResponse;
    purge_workflow_alpha1(rt::PurgeWorkflowRequest) -> ();
    terminate_workflow_alpha1(rt::TerminateWorkflowRequest) -> ();
    pause_workflow_alpha1(rt::PauseWorkflowRequest) -> ();
    resume_workflow_alpha1(rt::ResumeWorkflowRequest) -> ();
    raise_event_workflow_alpha1(rt::RaiseEventWorkflowRequest) -> ();
    start_workflow_beta1(rt::StartWorkflowRequest) -> rt::StartWorkflowResponse;
    get_workflow_beta1(rt::GetWorkflowRequest) -> rt::GetWorkflowResponse;
    purge_workflow_beta1(rt::PurgeWorkflowRequest) -> ();
    terminate_workflow_beta1(rt::TerminateWorkflowRequest) -> ();
    pause_workflow_beta1(rt::PauseWorkflowRequest) -> ();
    resume_workflow_beta1(rt::ResumeWorkflowRequest) -> ();
    raise_event_workflow_beta1(rt::RaiseEventWorkflowRequest) -> ();
    shutdown(rt::ShutdownRequest) -> ();
    schedule_job_alpha1(rt::ScheduleJobRequest) -> rt::ScheduleJobResponse;
    schedule_job(rt::ScheduleJobRequest) -> rt::ScheduleJobResponse;
    get_job_alpha1(rt::GetJobRequest) -> rt::GetJobResponse;
    get_job(rt::GetJobRequest) -> rt::GetJobResponse;
    delete_job_alpha1(rt::DeleteJobRequest) -> rt::DeleteJobResponse;
    delete_job(rt::DeleteJobRequest) -> rt::DeleteJobResponse;
    delete_jobs_by_prefix_alpha1(rt::DeleteJobsByPrefixRequestAlpha1) -> rt::DeleteJobsByPrefixResponseAlpha1;
    delete_jobs_by_prefix(rt::DeleteJobsByPrefixRequest) -> rt::DeleteJobsByPrefixResponse;
    list_jobs_alpha1(rt::ListJobsRequestAlpha1) -> rt::ListJobsResponseAlpha1;
    list_jobs(rt::ListJobsRequest) -> rt::ListJobsResponse;
    converse_alpha1(rt::ConversationRequest) -> rt::ConversationResponse;
    converse_alpha2(rt::ConversationRequestAlpha2) -> rt::ConversationResponseAlpha2;
    create_index_alpha1(rt::CreateIndexRequestAlpha1) -> ();
    get_index_alpha1(rt::GetIndexRequestAlpha1) -> rt::GetIndexResponseAlpha1;
    list_indexes_alpha1(rt::ListIndexesRequestAlpha1) -> rt::ListIndexesResponseAlpha1;
    delete_index_alpha1(rt::DeleteIndexRequestAlpha1) -> ();
    index_documents_alpha1(rt::IndexDocumentsRequestAlpha1) -> rt::IndexDocumentsResponseAlpha1;
    get_documents_alpha1(rt::GetDocumentsRequestAlpha1) -> rt::GetDocumentsResponseAlpha1;
    delete_documents_alpha1(rt::DeleteDocumentsRequestAlpha1) -> rt::DeleteDocumentsResponseAlpha1;
    search_alpha1(rt::SearchRequestAlpha1) -> rt::SearchResponseAlpha1;
    create_collection_alpha1(rt::CreateCollectionRequestAlpha1) -> ();
    get_collection_alpha1(rt::GetCollectionRequestAlpha1) -> rt::GetCollectionResponseAlpha1;
    list_collections_alpha1(rt::ListCollectionsRequestAlpha1) -> rt::ListCollectionsResponseAlpha1;
    delete_collection_alpha1(rt::DeleteCollectionRequestAlpha1) -> ();
    upsert_vectors_alpha1(rt::UpsertVectorsRequestAlpha1) -> rt::UpsertVectorsResponseAlpha1;
    delete_vectors_alpha1(rt::DeleteVectorsRequestAlpha1) -> rt::DeleteVectorsResponseAlpha1;
    get_vectors_alpha1(rt::GetVectorsRequestAlpha1) -> rt::GetVectorsResponseAlpha1;
    query_vectors_alpha1(rt::QueryVectorsRequestAlpha1) -> rt::QueryVectorsResponseAlpha1;
    batch_query_vectors_alpha1(rt::BatchQueryVectorsRequestAlpha1) -> rt::BatchQueryVectorsResponseAlpha1;
}

impl Emulator {
    fn transact(&self, req: rt::ExecuteStateTransactionRequest) -> Result<Response<()>, Status> {
        self.state.lock().store(&req.store_name)?;
        if !self.transactions {
            return Err(Status::unimplemented(format!(
                "state store {} doesn't support transactions",
                req.store_name
            )));
        }
        let mut changes = Vec::with_capacity(req.operations.len());
        let mut failure = None;
        for op in req.operations {
            let write = match op.operation_type.as_str() {
                "upsert" => true,
                "delete" => false,
                other => {
                    return Err(Status::unimplemented(format!("operation type {other} not supported")));
                }
            };
            let item = op
                .request
                .ok_or_else(|| Status::invalid_argument("transaction operation without request"))?;
            match self.change(item, write)? {
                Ok(change) => changes.push(change),
                Err(f) => failure = failure.or(Some(f)),
            }
        }
        let internal =
            |f: Fail| Status::internal(format!("error while executing state transaction: {}", f.message()));
        if let Some(f) = failure {
            return Err(internal(f));
        }
        let mut state = self.state.lock();
        let State { stores, version } = &mut *state;
        let store = stores.get_mut(&req.store_name).ok_or_else(|| Status::internal("store vanished"))?;
        store.apply(changes, version).map_err(internal)?;
        Ok(Response::new(()))
    }

    fn delete(&self, store: &str, items: Vec<StateItem>, context: &str) -> Result<Response<()>, Status> {
        self.state.lock().store(store)?;
        let changes = items
            .into_iter()
            .map(|item| self.change(item, false))
            .collect::<Result<Result<Vec<_>, Fail>, Status>>()?
            .map_err(|f| f.status(context))?;
        let mut state = self.state.lock();
        let State { stores, version } = &mut *state;
        let store = stores.get_mut(store).ok_or_else(|| Status::internal("store vanished"))?;
        store.apply(changes, version).map_err(|f| f.status(context))?;
        Ok(Response::new(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_parsing_follows_dapr() {
        let md = |v: &str| HashMap::from([(TTL_KEY.to_string(), v.to_string())]);
        assert_eq!(parse_ttl(&HashMap::new()).unwrap(), None);
        assert_eq!(parse_ttl(&md("")).unwrap(), None);
        assert_eq!(parse_ttl(&md("-1")).unwrap(), None);
        assert_eq!(parse_ttl(&md("0")).unwrap(), None);
        assert_eq!(parse_ttl(&md("5")).unwrap(), Some(Duration::from_secs(5)));
        for bad in ["1.5", "abc", "-2", "2147483648", " 1"] {
            assert!(parse_ttl(&md(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn etags_are_decimal_versions() {
        let e = |v: &str| common::Etag { value: v.into() };
        assert_eq!(parse_etag(None).unwrap(), None);
        assert_eq!(parse_etag(Some(&e(""))).unwrap(), None);
        assert_eq!(parse_etag(Some(&e("42"))).unwrap(), Some(42));
        assert!(matches!(parse_etag(Some(&e("W/\"x\""))), Err(Fail::InvalidEtag)));
    }
}
