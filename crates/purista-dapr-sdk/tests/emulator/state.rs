//! The emulator's keys, stores and bulk calls, through the raw generated
//! client (not the adapter).

use purista_dapr_sdk::{
    dapr::dapr::proto::runtime::v1::{
        DeleteBulkStateRequest, GetBulkStateRequest, GetStateRequest, SaveStateRequest,
    },
    emulator::Sidecar,
};
use tonic::Code;

use crate::support::*;

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
