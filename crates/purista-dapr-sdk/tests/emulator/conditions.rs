//! The emulator's conditions and expiry: ETags, first-write, TTLs, through
//! the raw generated client (not the adapter).

use std::time::{Duration, SystemTime};

use purista_dapr_sdk::{
    dapr::dapr::proto::{
        common::v1::Etag,
        runtime::v1::{DeleteStateRequest, GetBulkStateRequest},
    },
    emulator::Sidecar,
};
use tonic::Code;

use crate::support::*;

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
