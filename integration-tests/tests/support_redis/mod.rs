//! Helpers for the Redis test files: stores on the shared fixture server.

#![allow(dead_code)]

pub mod tls;
pub mod watch;

use std::sync::Arc;

use integration_tests::fixtures;
use purista_core::{StateStore, StoreConfig};
use purista_redis_state_store::{RedisStateStore, RedisStoreBuilder};

/// A store on the shared Redis, or `None` when there is none (the fixture
/// said why).
pub async fn store(config: StoreConfig) -> Option<Arc<dyn StateStore>> {
    Some(Arc::new(connect(config).await?))
}

/// A [`RedisStateStore`] on the shared Redis.
pub async fn connect(config: StoreConfig) -> Option<RedisStateStore> {
    let server = fixtures::redis().await?;
    Some(builder(server.url()).store_config(config).connect().await.expect("connect to the shared redis"))
}

/// The builder the tests use.
pub fn builder(url: &str) -> RedisStoreBuilder {
    RedisStateStore::builder(url)
}

/// What [`factory`]'s closures return.
pub type StoreFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<Arc<dyn StateStore>>> + Send>>;

/// A factory connecting to `url` (none: the server did not start, and said
/// why); `tag`, when given, goes in front of every key prefix as a
/// `{hash tag}` so that multi-key transactions stay in one Cluster slot.
pub fn factory(
    url: Option<String>,
    tag: Option<&'static str>,
) -> impl Fn(StoreConfig) -> StoreFuture + Sync + Send + 'static {
    move |mut config: StoreConfig| {
        let url = url.clone();
        if let Some(tag) = tag {
            config.key_prefix = format!("{{{tag}}}:{}", config.key_prefix);
        }
        Box::pin(async move {
            let store = builder(&url?).store_config(config).connect().await.expect("connect");
            Some(Arc::new(store) as Arc<dyn StateStore>)
        })
    }
}

/// An instance on `url` behind a near cache of its own, with default options.
pub async fn cached(url: &str) -> Arc<purista_core::CachedStore> {
    let store = builder(url).connect().await.expect("connect");
    let options = purista_core::CacheOptions::default();
    purista_core::CachedStore::new(Arc::new(store), options).await.expect("a near cache")
}
