//! The behaviour suite over TLS with a password (`support_redis::tls`).

mod support_redis;

use std::{process::ExitCode, sync::Arc};

use purista_core::{StateStore, StoreConfig};
use purista_redis_state_store::RedisStoreBuilder;
use support_redis::tls::{PASSWORD, TlsServer};

fn main() -> ExitCode {
    let server = tokio::runtime::Runtime::new().expect("runtime").block_on(TlsServer::start());
    let config = server.as_ref().map(|s| s.config("ca", PASSWORD));
    let factory = move |store: StoreConfig| {
        let config = config.clone();
        Box::pin(async move {
            let store = RedisStoreBuilder::from_config(config?).store_config(store).connect().await;
            Some(Arc::new(store.expect("connect over TLS")) as Arc<dyn StateStore>)
        }) as support_redis::StoreFuture
    };
    let code = purista_core::testkit::main(factory);
    drop(server);
    code
}
