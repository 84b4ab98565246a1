//! The near cache's rules on a 3-node JetStream cluster, bucket with 3
//! replicas: the `cache` cases, each instance its own cache over its own
//! connection, and the instances connected to different nodes first, so a
//! write reaches another instance's cache through another node.

mod support_nats;

use std::{
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use async_nats::ConnectOptions;
use integration_tests::fixtures::nats_cluster::Cluster;
use purista_core::{StateStore, StoreConfig, testkit};
use purista_nats_state_store::{NatsStateStore, Storage};

fn main() -> ExitCode {
    let cluster = tokio::runtime::Runtime::new().expect("runtime").block_on(Cluster::start());
    let urls = cluster.as_ref().map(Cluster::urls);
    let bucket = support_nats::bucket("cached");
    let next = Arc::new(AtomicUsize::new(0));
    let factory = move |config: StoreConfig| {
        let (urls, bucket, first) = (urls.clone(), bucket.clone(), next.fetch_add(1, Ordering::Relaxed));
        async move {
            let urls = urls?;
            let seeds: Vec<String> =
                urls.iter().cycle().skip(first % urls.len()).take(urls.len()).cloned().collect();
            let builder = || {
                NatsStateStore::builder()
                    .servers(seeds.clone())
                    .connect_options(ConnectOptions::new().retain_servers_order())
                    .bucket(&bucket)
                    .replicas(3)
                    .storage(Storage::File)
                    .store_config(config.clone())
            };
            Some(Arc::new(support_nats::cluster::connect(builder).await) as Arc<dyn StateStore>)
        }
    };
    let code = testkit::main_with(testkit::cached(factory), &["cache"], Vec::new());
    drop(cluster);
    code
}
