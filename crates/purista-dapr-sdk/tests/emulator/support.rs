//! State items and requests as a Dapr SDK sends them, through the raw
//! generated client.

use std::collections::HashMap;

use purista_dapr_sdk::{
    dapr::dapr::proto::{
        common::v1::{Etag, StateItem, StateOptions, state_options::StateConcurrency},
        runtime::v1::{
            DeleteStateRequest, ExecuteStateTransactionRequest, GetBulkStateRequest, GetStateRequest,
            GetStateResponse, SaveStateRequest, TransactionalStateOperation, dapr_client::DaprClient,
        },
    },
    emulator::Sidecar,
};
use tonic::{Code, Status, transport::Channel};

pub const STORE: &str = "statestore";

pub type Client = DaprClient<Channel>;

pub async fn client(sidecar: &Sidecar) -> Client {
    DaprClient::connect(sidecar.endpoint().to_string()).await.expect("connect to the emulator")
}

pub fn item(key: &str, value: &str) -> StateItem {
    StateItem {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        metadata: HashMap::from([("contentType".into(), "application/json".into())]),
        ..Default::default()
    }
}

pub fn with_etag(mut item: StateItem, etag: &str) -> StateItem {
    item.etag = Some(Etag { value: etag.into() });
    item
}

pub fn first_write(mut item: StateItem) -> StateItem {
    item.options =
        Some(StateOptions { concurrency: StateConcurrency::ConcurrencyFirstWrite as i32, consistency: 0 });
    item
}

pub fn with_ttl(mut item: StateItem, ttl: &str) -> StateItem {
    item.metadata.insert("ttlInSeconds".into(), ttl.into());
    item
}

pub async fn save(c: &mut Client, items: Vec<StateItem>) -> Result<(), Status> {
    c.save_state(SaveStateRequest { store_name: STORE.into(), states: items }).await.map(drop)
}

pub async fn get(c: &mut Client, key: &str) -> Result<GetStateResponse, Status> {
    let req = GetStateRequest { store_name: STORE.into(), key: key.into(), ..Default::default() };
    c.get_state(req).await.map(|r| r.into_inner())
}

pub async fn value(c: &mut Client, key: &str) -> Option<String> {
    let data = get(c, key).await.expect("get").data;
    (!data.is_empty()).then(|| String::from_utf8(data).expect("utf-8"))
}

pub async fn etag(c: &mut Client, key: &str) -> String {
    get(c, key).await.expect("get").etag
}

pub async fn delete(c: &mut Client, key: &str, etag: Option<&str>) -> Result<(), Status> {
    let req = DeleteStateRequest {
        store_name: STORE.into(),
        key: key.into(),
        etag: etag.map(|e| Etag { value: e.into() }),
        ..Default::default()
    };
    c.delete_state(req).await.map(drop)
}

pub fn op(kind: &str, item: StateItem) -> TransactionalStateOperation {
    TransactionalStateOperation { operation_type: kind.into(), request: Some(item) }
}

pub async fn transact(c: &mut Client, ops: Vec<TransactionalStateOperation>) -> Result<(), Status> {
    let req = ExecuteStateTransactionRequest {
        store_name: STORE.into(),
        operations: ops,
        metadata: HashMap::new(),
    };
    c.execute_state_transaction(req).await.map(drop)
}

pub fn bulk_get(keys: &[&str]) -> GetBulkStateRequest {
    GetBulkStateRequest {
        store_name: STORE.into(),
        keys: keys.iter().map(|k| k.to_string()).collect(),
        ..Default::default()
    }
}

/// A JSON string of `bytes` bytes.
pub fn big(bytes: usize) -> String {
    format!("\"{}\"", "x".repeat(bytes - 2))
}

#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Err(s) if s.code() == code => s,
        other => panic!("expected {code:?}, got {other:?}"),
    }
}
