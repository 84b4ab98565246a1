//! `DaprStateStore` against the generated Dapr gRPC client doing the same
//! GetState / SaveState / GetBulkState, in one run, on one in-process sidecar
//! emulator (no daprd exists here; both sides pay the same gRPC costs).
//!
//! `cargo bench -p integration-tests --bench dapr`

mod harness;

use std::sync::Arc;

use bytes::Bytes;
use harness::Raw;
use purista_dapr_sdk::tonic::transport::Channel;
use purista_dapr_sdk::{
    DaprConfig, DaprStateStore,
    dapr::dapr::proto::{
        common::v1::StateItem,
        runtime::v1::{GetBulkStateRequest, GetStateRequest, SaveStateRequest, dapr_client::DaprClient},
    },
    emulator::{DEFAULT_STORE, Sidecar},
};

struct Grpc(DaprClient<Channel>);

impl Raw for Grpc {
    async fn get(&self, key: &str) -> Option<Bytes> {
        let req = GetStateRequest { store_name: DEFAULT_STORE.into(), key: key.into(), ..Default::default() };
        let data = self.0.clone().get_state(req).await.unwrap().into_inner().data;
        (!data.is_empty()).then(|| data.into())
    }
    async fn set(&self, key: &str, value: Bytes) {
        let item = StateItem { key: key.into(), value: value.into(), ..Default::default() };
        let req = SaveStateRequest { store_name: DEFAULT_STORE.into(), states: vec![item] };
        self.0.clone().save_state(req).await.unwrap();
    }
    async fn get_many(&self, keys: &[String]) -> Vec<Option<Bytes>> {
        let req = GetBulkStateRequest {
            store_name: DEFAULT_STORE.into(),
            keys: keys.to_vec(),
            ..Default::default()
        };
        let items = self.0.clone().get_bulk_state(req).await.unwrap().into_inner().items;
        items.into_iter().map(|i| (!i.data.is_empty()).then(|| i.data.into())).collect()
    }
}

fn main() {
    let rt = harness::runtime();
    let (sidecar, store, raw) = rt.block_on(async {
        let sidecar = Sidecar::start().await.expect("emulator");
        let config = DaprConfig::default().endpoint(sidecar.endpoint()).no_api_token();
        let store = DaprStateStore::connect(config).await.expect("store");
        // The same channel settings as the store's (TCP_NODELAY), so that
        // only the store's own work differs.
        let channel =
            purista_dapr_sdk::tonic::transport::Endpoint::from_shared(sidecar.endpoint().to_string())
                .expect("endpoint")
                .tcp_nodelay(true)
                .connect()
                .await
                .expect("grpc");
        let raw = DaprClient::new(channel);
        (sidecar, store, raw)
    });
    let mut c = harness::criterion();
    harness::run(&mut c, &rt, "dapr", Arc::new(store), Arc::new(Grpc(raw)));
    c.final_summary();
    drop(sidecar);
}
