//! The service runtime: `context.states`, namespacing, errors, destroy.

use std::sync::Arc;

use purista_core::{DefaultStateStore, ErrorKind, HandlerError, Json, Service, StateStore, StateStoreExt};

#[tokio::test]
async fn handlers_reach_state_through_context() {
    let store = DefaultStateStore::new();
    let service = Service::builder("users", "1")
        .state_store(store.clone())
        .command("remember", |ctx, name: String| async move {
            ctx.states.set("last-user", &name).await?;
            Ok(ctx.service.name.clone())
        })
        .build();
    let by: String = service.invoke("remember", "ada").await.unwrap();
    assert_eq!(by, "users");
    // Not namespaced by default: the key is shared as written (PURISTA-compatible).
    assert_eq!(store.get::<String>("last-user").await.unwrap().as_deref(), Some("ada"));
}

#[tokio::test]
async fn namespacing_keeps_services_apart_on_one_store() {
    let shared: Arc<dyn StateStore> = Arc::new(DefaultStateStore::new());
    let build = |version: &str| {
        Service::builder("users", version)
            .shared_state_store(shared.clone())
            .namespace_states(true)
            .command("put", |ctx, v: u32| async move { Ok(ctx.states.set("k", &v).await?) })
            .command("get", |ctx, (): ()| async move { Ok(ctx.states.get::<u32>("k").await?) })
            .build()
    };
    let (v1, v2) = (build("1"), build("2"));
    let _: () = v1.invoke("put", &1).await.unwrap();
    let _: () = v2.invoke("put", &2).await.unwrap();
    assert_eq!(v1.invoke::<_, Option<u32>>("get", &()).await.unwrap(), Some(1));
    assert_eq!(v2.invoke::<_, Option<u32>>("get", &()).await.unwrap(), Some(2));
    assert_eq!(shared.get::<u32>("users:1:k").await.unwrap(), Some(1));
    assert_eq!(shared.get::<u32>("users:2:k").await.unwrap(), Some(2));
    assert_eq!(shared.list_keys("users:").await.unwrap(), vec!["users:1:k", "users:2:k"]);
    assert_eq!(v1.states().list_keys("").await.unwrap(), vec!["k"], "prefix stripped");
}

#[tokio::test]
async fn errors_carry_status() {
    let service = Service::builder("limits", "1")
        .command("limited", |_ctx, (): ()| async move {
            Err::<(), _>(HandlerError::new(429, "rate limit exceeded"))
        })
        .command("bad-key", |ctx, (): ()| async move { Ok(ctx.states.set("", &1).await?) })
        .build();
    let err = service.invoke::<_, ()>("limited", &()).await.unwrap_err();
    assert_eq!((err.status(), err.message()), (429, "rate limit exceeded"));
    let err = service.invoke::<_, ()>("bad-key", &()).await.unwrap_err();
    assert_eq!(err.status(), 400);
    assert_eq!(err.store_error().map(|e| e.kind()), Some(ErrorKind::InvalidKey));
    assert_eq!(service.invoke::<_, ()>("nope", &()).await.unwrap_err().status(), 404);
    // A payload of the wrong shape is the caller's fault.
    assert_eq!(service.invoke::<_, ()>("limited", "not unit").await.unwrap_err().status(), 400);
}

#[tokio::test]
async fn default_store_when_none_given_and_destroy() {
    let service = Service::builder("plain", "1").build();
    assert_eq!(service.states().name(), "DefaultStateStore");
    service.states().set_state("k", Json::encode(&1).unwrap()).await.unwrap();
    service.destroy().await.unwrap();
}
