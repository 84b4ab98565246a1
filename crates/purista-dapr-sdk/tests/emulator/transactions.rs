//! The emulator's transactions, through the raw generated client (not the
//! adapter).

use purista_dapr_sdk::emulator::Sidecar;
use tonic::Code;

use crate::support::*;

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
