//! Waiting for replicas after a write (`WAIT`), so that a promoted replica
//! has every acknowledged write.

use std::time::Duration;

use fred::{clients::Client, interfaces::ServerInterface};
use purista_core::{Error, ErrorKind, Result};

use crate::RedisStateStore;

/// Behind Sentinel, each write waits for this many replicas this long by
/// default, so that a failover loses no acknowledged write (crate docs).
pub const DEFAULT_SENTINEL_WAIT: (u32, Duration) = (1, Duration::from_millis(500));

/// How many replicas a write waits for, and how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Replicas {
    count: u32,
    timeout: Duration,
}

/// The builder's choice about waiting for replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplicaWait {
    /// [`DEFAULT_SENTINEL_WAIT`] behind Sentinel, no waiting otherwise.
    ForDeployment,
    /// No waiting.
    Off,
    /// Waiting for these replicas.
    Wait(Replicas),
}

impl ReplicaWait {
    /// `count = 0` turns waiting off.
    pub(crate) fn chosen(count: u32, timeout: Duration) -> Self {
        if count == 0 { ReplicaWait::Off } else { ReplicaWait::Wait(Replicas { count, timeout }) }
    }

    /// What a store behind Sentinel or not waits for.
    pub(crate) fn resolve(self, behind_sentinel: bool) -> Option<Replicas> {
        match self {
            ReplicaWait::Off => None,
            ReplicaWait::Wait(replicas) => Some(replicas),
            ReplicaWait::ForDeployment => behind_sentinel.then_some({
                let (count, timeout) = DEFAULT_SENTINEL_WAIT;
                Replicas { count, timeout }
            }),
        }
    }
}

/// After a write, `WAIT`s on the same connection when the store waits for
/// replicas; `Unavailable` when too few confirmed in time (the write
/// reached the master, but may be lost on failover).
pub(crate) async fn after_write(store: &RedisStateStore, client: &Client) -> Result<()> {
    let Some(Replicas { count, timeout }) = store.replicas() else { return Ok(()) };
    let ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX).max(1);
    let acks: i64 = client.wait(i64::from(count), ms).await.map_err(|e| store.err(e, "WAIT"))?;
    if acks < i64::from(count) {
        let msg = format!(
            "redis at {} applied the write but only {acks} of {count} replicas confirmed it within \
             {timeout:?}: it may be lost on failover",
            store.target().address
        );
        return Err(Error::new(ErrorKind::Unavailable, msg));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_waits_behind_sentinel_only() {
        let default = Some(Replicas { count: 1, timeout: Duration::from_millis(500) });
        assert_eq!(ReplicaWait::ForDeployment.resolve(true), default);
        assert_eq!(ReplicaWait::ForDeployment.resolve(false), None);
        assert_eq!(ReplicaWait::chosen(0, Duration::from_secs(1)).resolve(true), None);
        let two = Some(Replicas { count: 2, timeout: Duration::from_secs(1) });
        assert_eq!(ReplicaWait::chosen(2, Duration::from_secs(1)).resolve(false), two);
    }
}
