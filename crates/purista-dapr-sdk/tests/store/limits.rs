//! Values near the gRPC message limit (daprd's `--max-body-size`, 4 MiB by
//! default), through the adapter.

use purista_core::{ErrorKind, Json, Op, StateStore};
use purista_dapr_sdk::{DaprConfig, DaprStateStore, emulator::Sidecar};

use crate::support::{big_value, config, expect_kind, grpc_code};

#[tokio::test]
async fn values_readable_one_by_one_are_readable_together() {
    let s = DaprStateStore::connect(config()).await.unwrap();
    let (a, b, c) = (
        purista_core::testkit::unique("big-a"),
        purista_core::testkit::unique("big-b"),
        purista_core::testkit::unique("big-c"),
    );
    // Each under the limit, any two together over it.
    s.set_state(&a, big_value(3_000_000, 'a')).await.unwrap();
    s.set_state(&b, big_value(3_000_000, 'b')).await.unwrap();
    s.set(&c, &1).await.unwrap();
    for key in [&a, &b] {
        assert_eq!(s.get_value(key).await.unwrap().unwrap().as_bytes().len(), 3_000_002);
    }
    let names = [a.as_str(), "missing", b.as_str(), c.as_str(), a.as_str()];
    let got = s.get_state(&names).await.expect("read together");
    assert_eq!(got.len(), 4);
    assert_eq!(got[&a], Some(big_value(3_000_000, 'a')));
    assert_eq!(got[&b], Some(big_value(3_000_000, 'b')));
    assert_eq!(got["missing"], None);
    assert_eq!(got[&c].as_ref().map(|j| j.as_bytes().to_vec()), Some(b"1".to_vec()));
    for key in [&a, &b, &c] {
        s.remove_state(key).await.unwrap();
    }
}

#[tokio::test]
async fn many_names_over_the_request_limit_are_asked_in_parts() {
    let sidecar = Sidecar::builder().max_body_size(2048).start().await.unwrap();
    let s = DaprStateStore::connect(DaprConfig::default().endpoint(sidecar.endpoint())).await.unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("name-{i:04}-with-some-padding")).collect();
    for key in keys.iter().step_by(7) {
        s.set(key, key).await.unwrap();
    }
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    let got = s.get_state(&names).await.expect("read in parts");
    assert_eq!(got.len(), keys.len());
    for (i, key) in keys.iter().enumerate() {
        let expected = (i % 7 == 0).then(|| Json::encode(key).unwrap());
        assert_eq!(got[key], expected, "{key}");
    }
}

#[tokio::test]
async fn a_value_over_the_client_limit_is_a_typed_error_naming_the_key() {
    let small = DaprStateStore::connect(config().max_message_size(1 << 20)).await.unwrap();
    let s = DaprStateStore::connect(config()).await.unwrap();
    let (big, fine) = (purista_core::testkit::unique("over"), purista_core::testkit::unique("under"));
    s.set_state(&big, big_value(2_000_000, 'x')).await.unwrap();
    s.set(&fine, &7).await.unwrap();
    let errors = [
        small.get_state(&[fine.as_str(), big.as_str()]).await.map(drop),
        small.get_value(&big).await.map(drop),
        small.get_entry(&big).await.map(drop),
    ];
    for result in errors {
        let err = result.expect_err("over this client's limit");
        assert_eq!(err.kind(), ErrorKind::Backend, "not the caller's value at fault: {err:?}");
        assert_eq!(err.key(), Some(big.as_str()), "{err:?}");
        assert!(err.message().contains("message size limit"), "{err}");
    }
    assert_eq!(small.get::<i32>(&fine).await.unwrap(), Some(7));
    s.remove_state(&big).await.unwrap();
    s.remove_state(&fine).await.unwrap();
}

#[tokio::test]
async fn a_value_over_the_sidecar_limit_is_an_invalid_value() {
    let s = DaprStateStore::connect(config()).await.unwrap();
    let key = purista_core::testkit::unique("too-big");
    let err = expect_kind(s.set_state(&key, big_value(5_000_000, 'x')).await, ErrorKind::InvalidValue);
    assert_eq!(err.key(), Some(key.as_str()));
    assert_eq!(grpc_code(&err), Some(tonic::Code::ResourceExhausted));
    let ops = vec![Op::put(&key, big_value(5_000_000, 'x'))];
    expect_kind(s.transaction(ops).await, ErrorKind::InvalidValue);
    assert_eq!(s.get::<String>(&key).await.unwrap(), None);
}
