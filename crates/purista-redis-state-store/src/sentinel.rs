//! Following a Sentinel failover at once: a subscription to the sentinel's
//! `+switch-master` channel makes the pool reconnect (and so ask the
//! sentinels for the new master) as soon as the switch is announced, instead
//! of writing to the old master until it is demoted.

use fred::{
    clients::{Pool, SubscriberClient},
    interfaces::{ClientLike, EventInterface, PubsubInterface},
    types::config::{Config, ServerConfig},
};
use tokio::task::JoinHandle;

/// The running follower; stopped on drop.
#[derive(Debug)]
pub(crate) struct Follower {
    subscriber: SubscriberClient,
    task: JoinHandle<()>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
        let subscriber = self.subscriber.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = subscriber.quit().await;
            });
        }
    }
}

/// Starts a follower when `pool` goes through Sentinel; `None` otherwise, or
/// when no sentinel answers (the pool still finds the new master on its next
/// reconnect).
pub(crate) async fn follow(pool: &Pool) -> Option<Follower> {
    let base = pool.next();
    let config = base.client_config();
    #[allow(unreachable_patterns)]
    let (hosts, service) = match &config.server {
        ServerConfig::Sentinel { hosts, service_name, .. } => (hosts.clone(), service_name.clone()),
        _ => return None,
    };
    for host in hosts {
        // Sentinels are reached without the data nodes' credentials.
        let sentinel = Config {
            server: ServerConfig::Centralized { server: host.clone() },
            username: None,
            password: None,
            database: None,
            ..config.clone()
        };
        let subscriber = SubscriberClient::new(
            sentinel,
            Some(base.perf_config()),
            Some(base.connection_config().clone()),
            base.client_reconnect_policy(),
        );
        if subscriber.init().await.is_err() {
            let _ = subscriber.quit().await;
            continue;
        }
        drop(subscriber.manage_subscriptions()); // runs detached until the client quits
        let mut messages = subscriber.message_rx();
        if subscriber.subscribe("+switch-master").await.is_err() {
            let _ = subscriber.quit().await;
            continue;
        }
        let pool = pool.clone();
        let task = tokio::spawn(async move {
            loop {
                match messages.recv().await {
                    Ok(message) => {
                        // "<service> <old-ip> <old-port> <new-ip> <new-port>"
                        let text = message.value.as_string().unwrap_or_default();
                        if text.split(' ').next() == Some(service.as_str()) {
                            tracing::info!(%text, "sentinel switched master: reconnecting");
                            let _ = pool.force_reconnection().await;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let _ = pool.force_reconnection().await;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        return Some(Follower { subscriber, task });
    }
    tracing::warn!(
        "no sentinel answered a +switch-master subscription; failovers are followed on reconnect only"
    );
    None
}
