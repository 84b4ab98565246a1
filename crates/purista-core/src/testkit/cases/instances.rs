//! Several instances of one store at once, each with its own connection, as
//! the service instances of a deployment share one backend.

use futures_util::future::join_all;
use serde_json::json;

use super::support::*;
use crate::{
    Service, StateStoreExt, StoreConfig,
    testkit::{Factory, unique},
};

/// How many instances the cases open at once.
const INSTANCES: usize = 8;

/// What one instance writes, every other reads at once (after the write is
/// acknowledged), and a remove on one is seen by all.
pub async fn instances_share_state(factory: &impl Factory) {
    let Some(first) = store(factory).await else { return };
    let mut all = vec![first];
    for _ in 1..INSTANCES {
        all.push(store(factory).await.expect("another instance"));
    }
    let key = unique("shared");
    for (i, writer) in all.iter().enumerate() {
        writer.set(&key, &i).await.expect("set");
        for (j, reader) in all.iter().enumerate() {
            assert_eq!(
                reader.get::<usize>(&key).await.unwrap(),
                Some(i),
                "instance {j} reads instance {i}'s write"
            );
        }
    }
    if all[0].capabilities().etag {
        // An ETag read on one instance is valid on another.
        let etag = all[1].get_entry(&key).await.unwrap().expect("entry").etag;
        all[2]
            .put(&key, crate::Json::from(json!("cas")), crate::PutOptions::update(etag))
            .await
            .expect("cas");
    }
    all[INSTANCES - 1].remove_state(&key).await.unwrap();
    for reader in &all {
        assert_eq!(reader.get::<serde_json::Value>(&key).await.unwrap(), None, "remove seen by all");
    }
}

/// Instances connecting all at once (a deployment starting) all come up.
pub async fn many_instances_connect_at_once(factory: &impl Factory) {
    let opened = join_all((0..2 * INSTANCES).map(|_| factory.store(StoreConfig::default()))).await;
    let stores: Vec<_> = opened.into_iter().map(|s| s.expect("every instance comes up")).collect();
    let key = unique("startup");
    join_all(stores.iter().enumerate().map(|(i, s)| {
        let key = format!("{key}-{i}");
        async move { s.set(&key, &i).await }
    }))
    .await
    .into_iter()
    .collect::<crate::Result<Vec<()>>>()
    .expect("every instance writes");
    for (i, s) in stores.iter().enumerate() {
        let other = format!("{key}-{}", (i + 1) % stores.len());
        assert_eq!(s.get::<usize>(&other).await.unwrap(), Some((i + 1) % stores.len()));
    }
}

/// Destroying a service releases only what it owns: a store shared with
/// other services keeps working for them.
pub async fn service_destroy_keeps_shared_store(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let a = Service::builder("svc-a", "1").shared_state_store(s.clone()).build();
    let b = Service::builder("svc-b", "1").shared_state_store(s.clone()).namespace_states(true).build();
    let key = unique("service-destroy");
    a.states().set(&key, &"a").await.unwrap();
    a.destroy().await.expect("destroy service a");
    b.states().set(&key, &"b").await.expect("service b still writes");
    assert_eq!(s.get::<String>(&key).await.unwrap().as_deref(), Some("a"), "the shared store still reads");
    b.destroy().await.expect("destroy service b");
    s.remove_state(&key).await.expect("the shared store outlives both services");
}

/// Destroying one handle (a scoped store) leaves the handles it shares a
/// connection with working.
pub async fn destroy_keeps_other_handles(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let scoped = s.clone().scoped("scoped-handle:");
    let key = unique("handle");
    scoped.set(&key, &1).await.unwrap();
    scoped.destroy().await.expect("destroy the scoped handle");
    s.set(&key, &2).await.expect("the parent handle still writes");
    assert_eq!(s.get::<i32>(&key).await.unwrap(), Some(2));
    let sibling = s.clone().scoped("scoped-handle:");
    assert_eq!(sibling.get::<i32>(&key).await.unwrap(), Some(1), "a new scoped handle still reads");
    s.remove_state(&key).await.unwrap();
    sibling.remove_state(&key).await.unwrap();
}
