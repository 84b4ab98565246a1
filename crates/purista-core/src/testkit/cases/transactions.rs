//! Transactions.

use serde_json::json;

use crate::{ETag, ErrorKind, Json, Op, PutOptions, StateStoreExt};

use super::support::*;
use crate::testkit::{Factory, unique};

/// Upserts then deletes in later groups, each visible after commit.
pub async fn transactions(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let keys: Vec<String> = (0..6).map(|i| unique(&format!("tx-{i}"))).collect();
    s.transaction(Vec::new()).await.expect("empty transaction");
    let upserts = keys.iter().enumerate().map(|(i, k)| Op::put(k, Json::from(json!({ "i": i })))).collect();
    s.transaction(upserts).await.expect("upserts");
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(raw(&*s, k).await, Some(json!({ "i": i })));
    }
    let deletes = keys[..3].iter().map(Op::remove).chain([Op::remove(unique("tx-never-set"))]).collect();
    s.transaction(deletes).await.expect("deletes, one of a missing key");
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(raw(&*s, k).await.is_some(), i >= 3, "key {i} after deletes");
    }
}

/// Order holds inside one transaction.
pub async fn transaction_order(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let (k1, k2, k3) = (unique("order-1"), unique("order-2"), unique("order-3"));
    s.set(&k1, &"one").await.unwrap();
    let ops = vec![
        Op::remove(&k1),
        Op::put(&k2, Json::from(json!("two"))),
        Op::remove(&k2),
        Op::put(&k3, Json::from(json!("three"))),
    ];
    s.transaction(ops).await.expect("ordered transaction");
    assert_eq!(raw(&*s, &k1).await, None);
    assert_eq!(raw(&*s, &k2).await, None);
    assert_eq!(raw(&*s, &k3).await, Some(json!("three")));
}

/// Each step sees what the earlier ones left: an ETag read before the
/// transaction no longer matches a key an earlier step wrote, and a
/// create-only write follows a remove of its key.
pub async fn transaction_steps_see_earlier_steps(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let (a, b) = (unique("steps-a"), unique("steps-b"));
    s.set(&a, &1).await.unwrap();
    let before = etag_of(&*s, &a).await;
    let ops = vec![
        Op::put(&a, Json::from(json!(2))),
        Op::put_with(&a, Json::from(json!(3)), PutOptions::update(before.clone())),
    ];
    let err = expect_kind(s.transaction(ops).await, ErrorKind::Conflict, "an etag an earlier step outdated");
    assert_eq!(err.key(), Some(a.as_str()));
    assert_eq!(raw(&*s, &a).await, Some(json!(1)), "nothing applied");
    if s.capabilities().create_only {
        s.set(&b, &1).await.unwrap();
        let ops = vec![
            Op::remove_if(&b, etag_of(&*s, &b).await),
            Op::put_with(&b, Json::from(json!(2)), PutOptions::create()),
        ];
        s.transaction(ops).await.expect("create after a remove in one transaction");
        assert_eq!(raw(&*s, &b).await, Some(json!(2)));
    }
    s.remove_state(&a).await.unwrap();
    s.remove_state(&b).await.unwrap();
}

/// A transaction over the store's declared limit fails before anything is written.
pub async fn transaction_limit(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let max = s.capabilities().max_transaction_ops.expect("the table runs this case only with a limit");
    let p = unique("tx-limit");
    let ops = (0..=max).map(|i| Op::put(format!("{p}-{i}"), Json::from(json!(i)))).collect();
    expect_kind(s.transaction(ops).await, ErrorKind::InvalidArgument, "a transaction over the limit");
    assert_eq!(raw(&*s, &format!("{p}-0")).await, None, "nothing written");
}

/// All or nothing when one step's ETag does not match; the conflict names its key.
pub async fn transaction_all_or_nothing(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let caps = s.capabilities();
    let (a, b, c) = (unique("aon-a"), unique("aon-b"), unique("aon-c"));
    s.set(&a, &"a1").await.unwrap();
    s.set(&b, &"b1").await.unwrap();
    let good = etag_of(&*s, &a).await;
    let ops = vec![
        Op::put_with(&a, Json::from(json!("a2")), PutOptions::update(good.clone())),
        Op::put(&c, Json::from(json!("c2"))),
        Op::remove_if(&b, ETag::new("not-the-etag")),
    ];
    let err = expect_kind(s.transaction(ops).await, ErrorKind::Conflict, "transaction with a bad etag");
    assert_eq!(err.key(), Some(b.as_str()), "conflict names the key");
    assert_eq!(raw(&*s, &a).await, Some(json!("a1")), "nothing applied");
    assert_eq!(raw(&*s, &b).await, Some(json!("b1")));
    assert_eq!(raw(&*s, &c).await, None);
    if caps.create_only {
        let ops = vec![
            Op::put(&c, Json::from(json!("c3"))),
            Op::put_with(&a, Json::from(json!(0)), PutOptions::create()),
        ];
        let err = expect_kind(s.transaction(ops).await, ErrorKind::Conflict, "create-only in a transaction");
        assert_eq!(err.key(), Some(a.as_str()));
        assert_eq!(raw(&*s, &c).await, None, "nothing applied");
    }
    // The same transaction with the right etag goes through whole.
    let b_tag = etag_of(&*s, &b).await;
    let ops = vec![
        Op::put_with(&a, Json::from(json!("a2")), PutOptions::update(good)),
        Op::put(&c, Json::from(json!("c2"))),
        Op::remove_if(&b, b_tag),
    ];
    s.transaction(ops).await.expect("good transaction");
    assert_eq!(raw(&*s, &a).await, Some(json!("a2")));
    assert_eq!(raw(&*s, &b).await, None);
    assert_eq!(raw(&*s, &c).await, Some(json!("c2")));
}
