//! The behaviour suite over TLS with a user and password (`support_nats::tls`).

mod support_nats;

use std::{process::ExitCode, sync::Arc};

use integration_tests::tls::Certificates;
use purista_core::{StateStore, StoreConfig};
use support_nats::tls::{PASSWORD, builder, start};

fn main() -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let certs = Certificates::make();
    let server = match &certs {
        Some(certs) => runtime.block_on(start(certs)),
        None => None,
    };
    // One bucket for the whole suite: its cases share data, as on a real server.
    let target = server.as_ref().zip(certs.as_ref()).map(|(s, c)| (s.port(), c.path("ca.crt")));
    let bucket = support_nats::bucket("tls-suite");
    let factory = move |config: StoreConfig| {
        let builder =
            target.clone().map(|(port, ca)| builder(port, ca, PASSWORD, &bucket).store_config(config));
        Box::pin(async move {
            let store = builder?.connect().await.expect("connect over TLS");
            Some(Arc::new(store) as Arc<dyn StateStore>)
        }) as std::pin::Pin<Box<dyn std::future::Future<Output = Option<Arc<dyn StateStore>>> + Send>>
    };
    let code = purista_core::testkit::main(factory);
    drop((server, certs));
    code
}
