//! `CLIENT TRACKING` in broadcast mode, the feed of [`invalidations`]: the
//! server tells one connection per node the name of every key under the
//! prefix that any client changed (writes, removes, expiries, evictions).
//! Needs RESP3 on that connection and Redis 6, but neither keyspace
//! notifications (`CONFIG SET`, often refused by managed servers) nor the
//! values writes publish for `watch`.
//!
//! [`invalidations`]: purista_core::StateStore::invalidations

use fred::{
    clients::SubscriberClient,
    interfaces::ClientInterface,
    types::{Value, client::Toggle},
};
use purista_core::{Error, ErrorKind, Result};

use crate::RedisStateStore;

/// Switches broadcast tracking of `prefix` on for the connection of `sub`
/// (all keys when it is empty); invalidations then come on it as pushes.
pub(super) async fn start(store: &RedisStateStore, sub: &SubscriberClient, prefix: &str) -> Result<()> {
    let prefixes: Vec<String> = if prefix.is_empty() { Vec::new() } else { vec![prefix.to_owned()] };
    let done =
        sub.client_tracking::<Value, _, _>(Toggle::On, None, prefixes, true, false, false, false).await;
    done.map(drop).map_err(|e| {
        let failed = store.target().error(e, "CLIENT TRACKING");
        // A refusal (unknown command, no permission), not a connection
        // that failed: the server cannot give this feed.
        if failed.kind() != ErrorKind::Backend {
            return failed;
        }
        let how = format!(
            "redis at {} refused CLIENT TRACKING (it needs Redis 6 or later)",
            store.target().address
        );
        Error::unsupported(how).with_source(failed)
    })
}
