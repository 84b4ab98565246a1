//! Cluster mode: the primaries a watcher subscribes to, followed as they
//! change (failover, a new primary, slots moving).

use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use fred::{
    clients::Client,
    interfaces::{ClientLike, ClusterInterface, EventInterface},
    types::config::{Config, Server, ServerConfig},
};
use parking_lot::RwLock;
use purista_core::{Error, ErrorKind};
use tokio::sync::broadcast;

use super::{NodeHandle, Watch, node::stopped};

/// Slot ranges a Cluster node owns.
pub(super) type SlotRanges = Vec<(u16, u16)>;

/// How often a Cluster watcher asks for the topology (fred's own topology
/// changes wake it earlier).
const TOPOLOGY_POLL: Duration = Duration::from_secs(1);

/// The slots a Cluster node owns, as the topology follower last saw them.
pub(super) struct Owned {
    slots: RwLock<SlotRanges>,
    /// Bumped on every topology change: the node forgets the published
    /// values it holds (they may belong to another node now).
    generation: AtomicU64,
}

impl Owned {
    pub(super) fn new(slots: SlotRanges) -> Self {
        Owned { slots: RwLock::new(slots), generation: AtomicU64::new(0) }
    }

    /// Whether the node owns `slot` now.
    pub(super) fn has(&self, slot: u16) -> bool {
        self.slots.read().iter().any(|(a, b)| (*a..=*b).contains(&slot))
    }

    /// The topology generation the node's published values belong to.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }
}

/// Every primary with the slot ranges it owns.
pub(super) fn primaries(base: &Client) -> Option<Vec<(Server, SlotRanges)>> {
    let state = base.cached_cluster_state()?;
    Some(
        state
            .unique_primary_nodes()
            .into_iter()
            .map(|server| {
                let slots =
                    state.slots().iter().filter(|s| s.primary == server).map(|s| (s.start, s.end)).collect();
                (server, slots)
            })
            .collect(),
    )
}

pub(super) fn node_config(base: &Client, server: &Server) -> Config {
    Config { server: ServerConfig::Centralized { server: server.clone() }, ..base.client_config() }
}

impl Watch {
    /// Follows the primaries, subscribing to new ones and dropping those
    /// gone, and says so with an error: changes made on a node before it was
    /// watched were not seen.
    pub(super) async fn follow(self, base: Client, mut nodes: HashMap<Server, NodeHandle>) {
        self.follow_with(&base, &mut nodes).await;
        let _ = base.quit().await;
    }

    async fn follow_with(&self, base: &Client, nodes: &mut HashMap<Server, NodeHandle>) {
        let mut changes = base.cluster_change_rx();
        let mut stop = self.stop.clone();
        let mut timer = tokio::time::interval(TOPOLOGY_POLL);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.tx.closed() => return,
                _ = stopped(&mut stop) => return,
                r = changes.recv() => {
                    if let Err(broadcast::error::RecvError::Closed) = r {
                        changes = base.cluster_change_rx();
                    }
                }
                _ = timer.tick() => {}
            }
            // Asks a node for the slots; a node that cannot answer now is
            // asked again at the next tick.
            if base.sync_cluster().await.is_err() {
                continue;
            }
            let Some(primaries) = primaries(base) else { continue };
            let mut changed: Vec<String> = Vec::new();
            let current: HashMap<Server, SlotRanges> = primaries.into_iter().collect();
            nodes.retain(|server, _| {
                let keep = current.contains_key(server);
                if !keep {
                    changed.push(format!("{server} is no longer a primary"));
                }
                keep
            });
            for (server, slots) in &current {
                match nodes.get(server).and_then(|n| n.owned.as_ref()) {
                    Some(owned) => {
                        if *owned.slots.read() != *slots {
                            *owned.slots.write() = slots.clone();
                            changed.push(format!("slots moved to or from {server}"));
                        }
                    }
                    None => match self.start(node_config(base, server), Some(slots.clone())).await {
                        Ok(node) => {
                            nodes.insert(server.clone(), node);
                            changed.push(format!("{server} became a primary"));
                        }
                        Err(e) => {
                            // Not recorded: tried again at the next tick.
                            let msg = format!(
                                "watch: {server} became a primary but cannot be watched; changes on it are not \
                                 seen: {e}"
                            );
                            if self.tx.send(Err(Error::new(ErrorKind::Unavailable, msg))).await.is_err() {
                                return;
                            }
                        }
                    },
                }
            }
            if changed.is_empty() {
                continue;
            }
            for node in nodes.values() {
                if let Some(owned) = &node.owned {
                    owned.generation.fetch_add(1, Relaxed);
                }
            }
            let msg = format!(
                "watch: the cluster topology changed ({}); changes made while it changed may not have been seen",
                changed.join("; ")
            );
            if self.tx.send(Err(Error::new(ErrorKind::Unavailable, msg))).await.is_err() {
                return;
            }
        }
    }
}
