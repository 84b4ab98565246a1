//! The emulator's semantics, case by case against SPEC §2, through the raw
//! generated client (not the adapter).

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use purista_dapr_sdk::{
    dapr::dapr::proto::{
        common::v1::{Etag, StateItem, StateOptions, state_options::StateConcurrency},
        runtime::v1::{
            DeleteBulkStateRequest, DeleteStateRequest, ExecuteStateTransactionRequest, GetBulkStateRequest,
            GetMetadataRequest, GetStateRequest, GetStateResponse, PublishEventRequest, SaveStateRequest,
            TransactionalStateOperation, dapr_client::DaprClient,
        },
    },
    emulator::{DEFAULT_MAX_BODY_SIZE, Sidecar},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Code, Request, Status, transport::Channel};

const STORE: &str = "statestore";

type Client = DaprClient<Channel>;

async fn client(sidecar: &Sidecar) -> Client {
    DaprClient::connect(sidecar.endpoint().to_string()).await.expect("connect to the emulator")
}

fn item(key: &str, value: &str) -> StateItem {
    StateItem {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        metadata: HashMap::from([("contentType".into(), "application/json".into())]),
        ..Default::default()
    }
}

fn with_etag(mut item: StateItem, etag: &str) -> StateItem {
    item.etag = Some(Etag { value: etag.into() });
    item
}

fn first_write(mut item: StateItem) -> StateItem {
    item.options =
        Some(StateOptions { concurrency: StateConcurrency::ConcurrencyFirstWrite as i32, consistency: 0 });
    item
}

fn with_ttl(mut item: StateItem, ttl: &str) -> StateItem {
    item.metadata.insert("ttlInSeconds".into(), ttl.into());
    item
}

async fn save(c: &mut Client, items: Vec<StateItem>) -> Result<(), Status> {
    c.save_state(SaveStateRequest { store_name: STORE.into(), states: items }).await.map(drop)
}

async fn get(c: &mut Client, key: &str) -> Result<GetStateResponse, Status> {
    let req = GetStateRequest { store_name: STORE.into(), key: key.into(), ..Default::default() };
    c.get_state(req).await.map(|r| r.into_inner())
}

async fn value(c: &mut Client, key: &str) -> Option<String> {
    let data = get(c, key).await.expect("get").data;
    (!data.is_empty()).then(|| String::from_utf8(data).expect("utf-8"))
}

async fn etag(c: &mut Client, key: &str) -> String {
    get(c, key).await.expect("get").etag
}

async fn delete(c: &mut Client, key: &str, etag: Option<&str>) -> Result<(), Status> {
    let req = DeleteStateRequest {
        store_name: STORE.into(),
        key: key.into(),
        etag: etag.map(|e| Etag { value: e.into() }),
        ..Default::default()
    };
    c.delete_state(req).await.map(drop)
}

fn op(kind: &str, item: StateItem) -> TransactionalStateOperation {
    TransactionalStateOperation { operation_type: kind.into(), request: Some(item) }
}

async fn transact(c: &mut Client, ops: Vec<TransactionalStateOperation>) -> Result<(), Status> {
    let req = ExecuteStateTransactionRequest {
        store_name: STORE.into(),
        operations: ops,
        metadata: HashMap::new(),
    };
    c.execute_state_transaction(req).await.map(drop)
}

#[track_caller]
fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Err(s) if s.code() == code => s,
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn save_and_get_store_under_app_id() {
    let sidecar = Sidecar::builder().app_id("orders").start().await.unwrap();
    let mut c = client(&sidecar).await;
    save(&mut c, vec![item("order:1", r#"{"paid":true}"#)]).await.unwrap();
    let got = get(&mut c, "order:1").await.unwrap();
    assert_eq!(got.data, br#"{"paid":true}"#);
    assert!(!got.etag.is_empty(), "a value has an etag");
    assert!(got.metadata.is_empty(), "no ttl, no ttlExpireTime");
    assert_eq!(sidecar.stored_keys(STORE), ["orders||order:1"]);
    assert_eq!(sidecar.app_id(), "orders");
}

#[tokio::test]
async fn missing_key_is_ok_and_empty() {
    let sidecar = Sidecar::start().await.unwrap();
    let mut c = client(&sidecar).await;
    let got = get(&mut c, "nobody").await.unwrap();
    assert!(got.data.is_empty() && got.etag.is_empty() && got.metadata.is_empty());
    // Deleting a missing key without an etag is fine.
    delete(&mut c, "nobody", None).await.unwrap();
}

#[tokio::test]
async fn separator_and_empty_keys_are_invalid_arguments() {
    let sidecar = Sidecar::start().await.unwrap();
    let mut c = client(&sidecar).await;
    for key in ["a||b", "||", ""] {
        expect_code(save(&mut c, vec![item(key, "1")]).await, Code::InvalidArgument);
        expect_code(get(&mut c, key).await, Code::InvalidArgument);
        expect_code(delete(&mut c, key, None).await, Code::InvalidArgument);
        let bulk = GetBulkStateRequest {
            store_name: STORE.into(),
            keys: vec!["ok".into(), key.into()],
            ..Default::default()
        };
        expect_code(c.get_bulk_state(bulk).await, Code::InvalidArgument);
        expect_code(transact(&mut c, vec![op("upsert", item(key, "1"))]).await, Code::InvalidArgument);
    }
    // A bulk save with one bad key writes nothing.
    expect_code(save(&mut c, vec![item("good", "1"), item("a||b", "2")]).await, Code::InvalidArgument);
    assert!(sidecar.stored_keys(STORE).is_empty());
    // A single `|` is an ordinary character.
    save(&mut c, vec![item("a|b", "1")]).await.unwrap();
    assert_eq!(value(&mut c, "a|b").await.as_deref(), Some("1"));
}

#[tokio::test]
async fn unknown_store_is_an_invalid_argument() {
    let sidecar = Sidecar::builder().stores(["one", "two"]).start().await.unwrap();
    let mut c = client(&sidecar).await;
    let req = SaveStateRequest { store_name: "three".into(), states: vec![item("k", "1")] };
    let status = expect_code(c.save_state(req).await, Code::InvalidArgument);
    assert_eq!(status.message(), "state store three is not found");
    let req = GetStateRequest { store_name: "three".into(), key: "k".into(), ..Default::default() };
    expect_code(c.get_state(req).await, Code::InvalidArgument);
    let req = SaveStateRequest { store_name: "two".into(), states: vec![item("k", "1")] };
    c.save_state(req).await.expect("a configured store");
    assert_eq!(sidecar.stored_keys("two"), ["emulator||k"]);
    assert!(sidecar.stored_keys("one").is_empty(), "stores are separate");

    let none = Sidecar::builder().stores(Vec::<String>::new()).start().await.unwrap();
    let mut c = client(&none).await;
    let status = expect_code(get(&mut c, "k").await, Code::FailedPrecondition);
    assert_eq!(status.message(), "state store is not configured");
}

#[tokio::test]
async fn etags_guard_saves_and_deletes() {
    let sidecar = Sidecar::start().await.unwrap();
    let mut c = client(&sidecar).await;
    save(&mut c, vec![item("k", "1")]).await.unwrap();
    let first = etag(&mut c, "k").await;

    let wrong = (first.parse::<u64>().unwrap() + 1000).to_string();
    let status = expect_code(save(&mut c, vec![with_etag(item("k", "2"), &wrong)]).await, Code::Aborted);
    assert!(status.message().contains("possible etag mismatch"), "{status:?}");
    assert_eq!(value(&mut c, "k").await.as_deref(), Some("1"));

    let status = expect_code(
        save(&mut c, vec![with_etag(item("k", "2"), "not-a-version")]).await,
        Code::InvalidArgument,
    );
    assert!(status.message().contains("invalid etag value"), "{status:?}");

    save(&mut c, vec![with_etag(item("k", "2"), &first)]).await.expect("right etag");
    let second = etag(&mut c, "k").await;
    assert_ne!(first, second, "etag changes on write");
    expect_code(save(&mut c, vec![with_etag(item("k", "3"), &first)]).await, Code::Aborted);

    // An empty etag counts as none (last write wins).
    save(&mut c, vec![with_etag(item("k", "4"), "")]).await.unwrap();
    let third = etag(&mut c, "k").await;

    expect_code(delete(&mut c, "k", Some(&second)).await, Code::Aborted);
    expect_code(delete(&mut c, "k", Some("garbage")).await, Code::InvalidArgument);
    assert_eq!(value(&mut c, "k").await.as_deref(), Some("4"), "failed delete keeps the value");
    delete(&mut c, "k", Some(&third)).await.expect("right etag delete");
    assert_eq!(value(&mut c, "k").await, None);

    // An etag on a key that does not exist is a mismatch.
    expect_code(save(&mut c, vec![with_etag(item("k", "5"), &third)]).await, Code::Aborted);
    expect_code(delete(&mut c, "k", Some(&third)).await, Code::Aborted);
    assert_eq!(value(&mut c, "k").await, None);
}

#[tokio::test]
async fn an_empty_etag_is_no_etag() {
    // Dapr hands the component `&etag.value` and components test
    // `HasETag()` (non-empty): an empty etag is none at all.
    let sidecar = Sidecar::start().await.unwrap();
    let mut c = client(&sidecar).await;
    save(&mut c, vec![first_write(with_etag(item("e", "1"), ""))]).await.expect("inserts a missing key");
    let status =
        expect_code(save(&mut c, vec![first_write(with_etag(item("e", "2"), ""))]).await, Code::Aborted);
    assert!(status.message().contains("possible etag mismatch"), "{status:?}");
    assert_eq!(value(&mut c, "e").await.as_deref(), Some("1"));
    transact(
        &mut c,
        vec![op("upsert", with_etag(item("e", "3"), "")), op("delete", with_etag(item("e", ""), ""))],
    )
    .await
    .expect("last-write upsert, then an unconditional delete");
    assert_eq!(value(&mut c, "e").await, None);
    save(&mut c, vec![item("e", "4")]).await.unwrap();
    delete(&mut c, "e", Some("")).await.expect("a delete with an empty etag removes");
    assert_eq!(value(&mut c, "e").await, None);
    // ... unless first-write finds the key present, as without an etag.
    save(&mut c, vec![item("e", "5")]).await.unwrap();
    let req = DeleteStateRequest {
        store_name: STORE.into(),
        key: "e".into(),
        etag: Some(Etag { value: String::new() }),
        options: first_write(item("e", "")).options,
        ..Default::default()
    };
    expect_code(c.delete_state(req).await, Code::Aborted);
    assert_eq!(value(&mut c, "e").await.as_deref(), Some("5"));
}

#[tokio::test]
async fn first_write_inserts_once() {
    let sidecar = Sidecar::start().await.unwrap();
    let mut c = client(&sidecar).await;
    save(&mut c, vec![first_write(item("fw", "1"))]).await.expect("first insert");
    expect_code(save(&mut c, vec![first_write(item("fw", "2"))]).await, Code::Aborted);
    assert_eq!(value(&mut c, "fw").await.as_deref(), Some("1"));
    let tag = etag(&mut c, "fw").await;
    save(&mut c, vec![first_write(with_etag(item("fw", "3"), &tag))]).await.expect("with the etag, once");
    expect_code(save(&mut c, vec![first_write(with_etag(item("fw", "4"), &tag))]).await, Code::Aborted);
    assert_eq!(value(&mut c, "fw").await.as_deref(), Some("3"));
    // Last-write without an etag overwrites.
    save(&mut c, vec![item("fw", "5")]).await.unwrap();
    assert_eq!(value(&mut c, "fw").await.as_deref(), Some("5"));
}

#[tokio::test]
async fn ttl_expires_and_reports_expiry() {
    let sidecar = Sidecar::start().await.unwrap();
    let mut c = client(&sidecar).await;
    let before = SystemTime::now();
    save(&mut c, vec![with_ttl(item("t", "1"), "1"), with_ttl(item("t60", "1"), "60")]).await.unwrap();
    let got = get(&mut c, "t60").await.unwrap();
    let raw = got.metadata.get("ttlExpireTime").expect("ttlExpireTime reported");
    let at: SystemTime = chrono::DateTime::parse_from_rfc3339(raw).expect("RFC 3339").into();
    let want = before + Duration::from_secs(60);
    let off = at.duration_since(want).unwrap_or_else(|e| e.duration());
    assert!(off <= Duration::from_secs(1), "{raw} is about now + 60 s");
    assert!(raw.ends_with('Z'), "UTC: {raw}");

    let bulk =
        GetBulkStateRequest { store_name: STORE.into(), keys: vec!["t60".into()], ..Default::default() };
    let items = c.get_bulk_state(bulk).await.unwrap().into_inner().items;
    assert_eq!(items[0].metadata.get("ttlExpireTime"), Some(raw), "bulk get reports expiry too");

    assert_eq!(value(&mut c, "t").await.as_deref(), Some("1"));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(value(&mut c, "t").await, None, "gone after its ttl");
    assert_eq!(sidecar.stored_keys(STORE), ["emulator||t60"]);
    // An etag on an expired key is a mismatch; first-write over it succeeds.
    save(&mut c, vec![first_write(item("t", "2"))]).await.expect("first-write over an expired key");
}

#[tokio::test]
async fn ttl_removed_by_minus_one_or_leaving_it_out() {
    let sidecar = Sidecar::start().await.unwrap();
    let mut c = client(&sidecar).await;
    save(&mut c, vec![with_ttl(item("a", "1"), "1"), with_ttl(item("b", "1"), "1")]).await.unwrap();
    save(&mut c, vec![with_ttl(item("a", "2"), "-1"), item("b", "2")]).await.unwrap();
    for key in ["a", "b"] {
        assert!(get(&mut c, key).await.unwrap().metadata.is_empty(), "{key}: no expiry any more");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(value(&mut c, "a").await.as_deref(), Some("2"));
    assert_eq!(value(&mut c, "b").await.as_deref(), Some("2"));
}

#[tokio::test]
async fn malformed_ttl_is_an_error() {
    let sidecar = Sidecar::start().await.unwrap();
    let mut c = client(&sidecar).await;
    for bad in ["1.5", "soon", "-2", "99999999999"] {
        let status = expect_code(save(&mut c, vec![with_ttl(item("k", "1"), bad)]).await, Code::Internal);
        assert!(status.message().contains("ttlInSeconds"), "{bad}: {status:?}");
    }
    assert!(sidecar.stored_keys(STORE).is_empty(), "nothing written");
}

#[tokio::test]
async fn bulk_get_answers_every_key() {
    let sidecar = Sidecar::start().await.unwrap();
    let mut c = client(&sidecar).await;
    save(&mut c, vec![item("x", "1"), item("y", "\"two\"")]).await.unwrap();
    let req = GetBulkStateRequest {
        store_name: STORE.into(),
        keys: vec!["y".into(), "missing".into(), "x".into()],
        ..Default::default()
    };
    let items = c.get_bulk_state(req).await.unwrap().into_inner().items;
    let keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["y", "missing", "x"], "keys as asked, without the app id");
    assert_eq!(items[0].data, b"\"two\"");
    assert!(
        items[1].data.is_empty() && items[1].error.is_empty() && items[1].etag.is_empty(),
        "missing is not an error"
    );
    assert_eq!(items[2].data, b"1");
    assert!(!items[2].etag.is_empty());

    let empty = GetBulkStateRequest { store_name: STORE.into(), ..Default::default() };
    assert!(c.get_bulk_state(empty).await.unwrap().into_inner().items.is_empty());
}

#[tokio::test]
async fn bulk_save_and_delete_are_all_or_nothing() {
    let sidecar = Sidecar::start().await.unwrap();
    let mut c = client(&sidecar).await;
    save(&mut c, vec![item("a", "1"), item("b", "1"), item("c", "1")]).await.unwrap();
    let (ta, tb) = (etag(&mut c, "a").await, etag(&mut c, "b").await);
    let bad = vec![with_etag(item("a", "2"), &ta), with_etag(item("b", "2"), "12345678")];
    expect_code(save(&mut c, bad).await, Code::Aborted);
    assert_eq!(value(&mut c, "a").await.as_deref(), Some("1"), "nothing applied");

    let del = |states| DeleteBulkStateRequest { store_name: STORE.into(), states };
    let bad = vec![with_etag(item("a", ""), &ta), with_etag(item("b", ""), "12345678")];
    expect_code(c.delete_bulk_state(del(bad)).await, Code::Aborted);
    assert_eq!(sidecar.stored_keys(STORE).len(), 3, "nothing deleted");

    let good =
        vec![with_etag(item("a", ""), &ta), with_etag(item("b", ""), &tb), item("c", ""), item("never", "")];
    c.delete_bulk_state(del(good)).await.expect("bulk delete");
    assert!(sidecar.stored_keys(STORE).is_empty());
}

#[tokio::test]
async fn transactions_apply_in_order() {
    let sidecar = Sidecar::start().await.unwrap();
    let mut c = client(&sidecar).await;
    save(&mut c, vec![item("k1", "1")]).await.unwrap();
    let ops = vec![
        op("delete", item("k1", "")),
        op("upsert", item("k2", "2")),
        op("delete", item("k2", "")),
        op("upsert", item("k3", "3")),
        op("delete", item("never-set", "")),
    ];
    transact(&mut c, ops).await.unwrap();
    assert_eq!(value(&mut c, "k1").await, None);
    assert_eq!(value(&mut c, "k2").await, None);
    assert_eq!(value(&mut c, "k3").await.as_deref(), Some("3"));

    // A later group sees the earlier one.
    let t3 = etag(&mut c, "k3").await;
    transact(&mut c, vec![op("upsert", with_ttl(with_etag(item("k3", "4"), &t3), "60"))]).await.unwrap();
    let got = get(&mut c, "k3").await.unwrap();
    assert_eq!(got.data, b"4");
    assert!(got.metadata.contains_key("ttlExpireTime"), "ttl inside a transaction");
}

#[tokio::test]
async fn transaction_failures_are_internal_and_apply_nothing() {
    let sidecar = Sidecar::start().await.unwrap();
    let mut c = client(&sidecar).await;
    save(&mut c, vec![item("a", "1"), item("b", "1")]).await.unwrap();
    let ta = etag(&mut c, "a").await;
    let ops = vec![
        op("upsert", with_etag(item("a", "2"), &ta)),
        op("upsert", item("c", "2")),
        op("delete", with_etag(item("b", ""), "99999")),
    ];
    let status = expect_code(transact(&mut c, ops).await, Code::Internal);
    assert_eq!(
        status.message(),
        "error while executing state transaction: possible etag mismatch. error from state store"
    );
    assert_eq!(value(&mut c, "a").await.as_deref(), Some("1"));
    assert_eq!(value(&mut c, "b").await.as_deref(), Some("1"));
    assert_eq!(value(&mut c, "c").await, None);

    // First-write inside a transaction, and a malformed ttl.
    expect_code(transact(&mut c, vec![op("upsert", first_write(item("a", "3")))]).await, Code::Internal);
    expect_code(transact(&mut c, vec![op("upsert", with_ttl(item("z", "1"), "x"))]).await, Code::Internal);
    expect_code(transact(&mut c, vec![op("delete", with_etag(item("a", ""), "nope"))]).await, Code::Internal);
    assert_eq!(sidecar.stored_keys(STORE), ["emulator||a", "emulator||b"]);

    // Conditions see the earlier steps: remove then create succeeds.
    transact(&mut c, vec![op("delete", item("a", "")), op("upsert", first_write(item("a", "new")))])
        .await
        .unwrap();
    assert_eq!(value(&mut c, "a").await.as_deref(), Some("new"));

    let status = expect_code(transact(&mut c, vec![op("merge", item("a", "1"))]).await, Code::Unimplemented);
    assert!(status.message().contains("merge"));
}

#[tokio::test]
async fn transactions_can_be_unsupported() {
    let sidecar = Sidecar::builder().transactions(false).start().await.unwrap();
    let mut c = client(&sidecar).await;
    expect_code(transact(&mut c, vec![op("upsert", item("a", "1"))]).await, Code::Unimplemented);
    assert!(sidecar.stored_keys(STORE).is_empty());
}

#[tokio::test]
async fn api_token_is_checked() {
    let sidecar = Sidecar::builder().api_token("s3cret").start().await.unwrap();
    let mut c = client(&sidecar).await;
    let status = expect_code(get(&mut c, "k").await, Code::Unauthenticated);
    assert!(status.message().contains("missing api token"), "{status:?}");

    let with_token = |token: &str| {
        let mut req =
            Request::new(GetStateRequest { store_name: STORE.into(), key: "k".into(), ..Default::default() });
        req.metadata_mut().insert("dapr-api-token", token.parse().unwrap());
        req
    };
    let status = expect_code(c.get_state(with_token("wrong")).await, Code::Unauthenticated);
    assert!(!status.message().contains("s3cret"), "the token is never echoed");
    c.get_state(with_token("s3cret")).await.expect("right token");
    // Unimplemented RPCs are behind the token check too.
    expect_code(c.get_metadata(GetMetadataRequest {}).await, Code::Unauthenticated);
}

#[tokio::test]
async fn other_rpcs_are_unimplemented() {
    let sidecar = Sidecar::start().await.unwrap();
    let mut c = client(&sidecar).await;
    expect_code(c.get_metadata(GetMetadataRequest {}).await, Code::Unimplemented);
    let publish = PublishEventRequest { pubsub_name: "p".into(), topic: "t".into(), ..Default::default() };
    let status = expect_code(c.publish_event(publish).await, Code::Unimplemented);
    assert!(status.message().contains("publish_event"));
}

#[tokio::test]
async fn health_check_answers_204() {
    let sidecar = Sidecar::builder().api_token("not-needed-for-health").start().await.unwrap();
    let mut tcp = tokio::net::TcpStream::connect(sidecar.addr()).await.unwrap();
    tcp.write_all(b"GET /v1.0/healthz/outbound HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
}

#[tokio::test]
async fn dropping_stops_serving() {
    let sidecar = Sidecar::start().await.unwrap();
    let endpoint = sidecar.endpoint().to_string();
    let mut c = client(&sidecar).await;
    save(&mut c, vec![item("k", "1")]).await.unwrap();
    drop(sidecar);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = tokio::time::timeout(Duration::from_secs(5), DaprClient::connect(endpoint)).await;
    assert!(matches!(refused, Ok(Err(_))), "no new connection after drop");
    let answer = tokio::time::timeout(Duration::from_secs(5), get(&mut c, "k")).await.expect("no hang");
    assert!(answer.is_err(), "an open connection fails once the sidecar is gone");
}

#[test]
fn a_sidecar_on_its_own_thread_outlives_test_runtimes() {
    let sidecar = Sidecar::builder().start_on_thread().unwrap();
    for round in 0..2 {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut c = client(&sidecar).await;
            save(&mut c, vec![item(&format!("r{round}"), "1")]).await.unwrap();
        });
    }
    assert_eq!(sidecar.stored_keys(STORE), ["emulator||r0", "emulator||r1"]);
}

/// A JSON string of `bytes` bytes.
fn big(bytes: usize) -> String {
    format!("\"{}\"", "x".repeat(bytes - 2))
}

fn bulk_get(keys: &[&str]) -> GetBulkStateRequest {
    GetBulkStateRequest {
        store_name: STORE.into(),
        keys: keys.iter().map(|k| k.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn messages_over_the_body_size_limit_are_resource_exhausted() {
    assert_eq!(DEFAULT_MAX_BODY_SIZE, 4 << 20, "daprd's default --max-body-size");
    let sidecar = Sidecar::builder().max_body_size(1 << 20).start().await.unwrap();
    let mut c = client(&sidecar).await;
    // Each value fits both ways; two do not fit in one answer.
    save(&mut c, vec![item("a", &big(700_000))]).await.unwrap();
    save(&mut c, vec![item("b", &big(700_000))]).await.unwrap();
    assert_eq!(get(&mut c, "a").await.unwrap().data.len(), 700_000);
    let items = c.get_bulk_state(bulk_get(&["b"])).await.unwrap().into_inner().items;
    assert_eq!(items[0].data.len(), 700_000);
    let status = expect_code(c.get_bulk_state(bulk_get(&["a", "b"])).await, Code::ResourceExhausted);
    assert!(status.message().starts_with("grpc: trying to send message larger than max ("), "{status:?}");
    assert!(status.message().ends_with(" vs. 1048576)"), "{status:?}");

    // A request over the limit is refused before anything is applied.
    let status = expect_code(save(&mut c, vec![item("c", &big(1_100_000))]).await, Code::ResourceExhausted);
    assert!(status.message().starts_with("grpc: received message larger than max ("), "{status:?}");
    let ops = vec![op("delete", item("a", "")), op("upsert", item("c", &big(1_100_000)))];
    expect_code(transact(&mut c, ops).await, Code::ResourceExhausted);
    assert_eq!(sidecar.stored_keys(STORE), ["emulator||a", "emulator||b"]);
}

#[tokio::test]
async fn a_raised_body_size_limit_sends_larger_answers() {
    let sidecar = Sidecar::builder().max_body_size(16 << 20).start().await.unwrap();
    let mut c = client(&sidecar).await.max_decoding_message_size(16 << 20);
    save(&mut c, vec![item("a", &big(3_000_000))]).await.unwrap();
    save(&mut c, vec![item("b", &big(3_000_000))]).await.unwrap();
    let items = c.get_bulk_state(bulk_get(&["a", "b"])).await.expect("one answer").into_inner().items;
    assert_eq!(items.iter().map(|i| i.data.len()).sum::<usize>(), 6_000_000);
}
