//! The emulator as a server: the API token, other RPCs, the health check,
//! stopping, its own thread, the message size limit; through the raw
//! generated client (not the adapter).

use std::time::Duration;

use purista_dapr_sdk::{
    dapr::dapr::proto::runtime::v1::{
        GetMetadataRequest, GetStateRequest, PublishEventRequest, dapr_client::DaprClient,
    },
    emulator::{DEFAULT_MAX_BODY_SIZE, Sidecar},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Code, Request};

use crate::support::*;

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
