//! The emulated `dapr.proto.runtime.v1.Dapr` gRPC service: the state RPCs
//! over [`State`] (message size limits, delay and stall, the API token),
//! every other RPC `Unimplemented`.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use dapr::dapr::proto::{
    common::v1::{self as common, StateItem},
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

use super::{
    rules::{Change, Fail, Refused, stored_key},
    storage::{Item, State},
};
use crate::API_TOKEN_HEADER;

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

    fn get_item(&self, store: &str, key: &str) -> Result<Option<Item>, Status> {
        let key = stored_key(&self.app_id, key)?;
        let mut state = self.state.lock();
        let store = state.store(store)?;
        Ok(store.live(&key, SystemTime::now()).cloned())
    }

    fn get_items(&self, store: &str, keys: Vec<String>) -> Result<Vec<rt::BulkStateItem>, Status> {
        let stored = keys.iter().map(|k| stored_key(&self.app_id, k)).collect::<Result<Vec<_>, _>>()?;
        let now = SystemTime::now();
        let mut state = self.state.lock();
        let store = state.store(store)?;
        Ok(keys
            .into_iter()
            .zip(stored)
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
    }

    /// A save (`write`) or delete of `items`, all or nothing; a failure
    /// answered as by `SaveState`/`DeleteState`, after `context`.
    fn apply(
        &self,
        store: &str,
        items: Vec<StateItem>,
        write: bool,
        context: &str,
    ) -> Result<Response<()>, Status> {
        self.state.lock().store(store)?;
        let changes = items
            .into_iter()
            .map(|item| Change::new(&self.app_id, item, write))
            .collect::<Result<Vec<_>, Refused>>()
            .map_err(|refused| refused.status(context))?;
        self.state.lock().apply(store, changes, |fail| fail.status(context))?;
        Ok(Response::new(()))
    }

    /// A transaction: a bad request is answered at once; anything else that
    /// fails, checks included, is `Internal`, as Dapr answers.
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
            match Change::new(&self.app_id, item, write) {
                Ok(change) => changes.push(change),
                Err(Refused::Request(status)) => return Err(status),
                Err(Refused::Component(fail)) => failure = failure.or(Some(fail)),
            }
        }
        let internal =
            |f: Fail| Status::internal(format!("error while executing state transaction: {}", f.message()));
        if let Some(fail) = failure {
            return Err(internal(fail));
        }
        self.state.lock().apply(&req.store_name, changes, internal)?;
        Ok(Response::new(()))
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
            let items = self.run(move |e| e.get_items(&req.store_name, req.keys)).await?;
            self.send(rt::GetBulkStateResponse { items })
        }

        async fn save_state(&self, request: Request<rt::SaveStateRequest>) -> Result<Response<()>, Status> {
            let req = self.receive(request)?;
            self.run(move |e| {
                let context = format!("failed saving state in state store {}", req.store_name);
                e.apply(&req.store_name, req.states, true, &context)
            })
            .await
        }

        async fn delete_state(&self, request: Request<rt::DeleteStateRequest>) -> Result<Response<()>, Status> {
            let req = self.receive(request)?;
            self.run(move |e| {
                let context = format!("failed deleting state with key {}", req.key);
                let item = StateItem { key: req.key, etag: req.etag, options: req.options, ..Default::default() };
                e.apply(&req.store_name, vec![item], false, &context)
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
                e.apply(&req.store_name, req.states, false, &context)
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
