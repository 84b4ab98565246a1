//! A 3-node JetStream cluster of local `nats-server` processes on loopback
//! ports, each with a store directory of its own, so a node can be killed and
//! started again on the same port and data.

use std::time::{Duration, Instant};

use purista_nats_state_store::{NatsStateStore, NatsStateStoreBuilder};

use super::{Proc, free_port};

/// Three routed JetStream nodes, `n1` to `n3`; killed and removed on drop.
pub struct Cluster {
    pub nodes: Vec<Proc>,
}

impl Cluster {
    /// Starts the three nodes; `None` (after saying why) without a binary.
    /// Ports are picked before the servers bind them; one taken meanwhile
    /// (containers of other tests publish ports too) means another try.
    pub async fn start() -> Option<Cluster> {
        for attempt in 1..=3 {
            match Self::try_start().await {
                Ok(started) => return started,
                Err(why) if attempt < 3 => eprintln!("cluster start {attempt} failed, retrying: {why}"),
                Err(why) => panic!("the 3-node cluster did not start: {why}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    async fn try_start() -> Result<Option<Cluster>, String> {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports.iter().map(|(_, c)| format!("nats://127.0.0.1:{c}")).collect();
        let routes = routes.join(",");
        let mut nodes = Vec::new();
        for (n, (port, cluster)) in ports.iter().enumerate() {
            let name = format!("n{}", n + 1);
            let cluster_url = format!("nats://127.0.0.1:{cluster}");
            let args = [
                "-js",
                "-sd",
                "{dir}",
                "--server_name",
                &name,
                "--cluster_name",
                "purista",
                "--cluster",
                &cluster_url,
                "--routes",
                &routes,
            ];
            match Proc::try_start_on(&name, *port, &args).await? {
                Some(node) => nodes.push(node),
                None => return Ok(None),
            }
        }
        Ok(Some(Cluster { nodes }))
    }

    /// Every node's client URL, `n1` first.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Proc::url).collect()
    }

    /// Connects `builder()` once JetStream has a meta leader (the bucket
    /// cannot be made before), retrying for up to 30 s.
    pub async fn connect(&self, builder: impl Fn() -> NatsStateStoreBuilder) -> NatsStateStore {
        let started = Instant::now();
        loop {
            match builder().connect().await {
                Ok(store) => {
                    eprintln!("3-node cluster ready in {:?}", started.elapsed());
                    return store;
                }
                Err(e) if started.elapsed() < Duration::from_secs(30) => {
                    eprintln!("cluster not ready: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("cluster never became ready: {e}"),
            }
        }
    }
}
