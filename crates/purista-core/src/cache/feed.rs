//! The invalidation task: follows the store's change feed (`invalidations("")`) and
//! drops each key it reports. When the feed is interrupted (an error item:
//! lag, reconnect gap, lost connection; or the stream ending), events may
//! have been lost, so the cache is emptied and serves nothing until a new
//! subscription is up.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;

use super::near::Near;
use crate::{StateStore, WatchStream};

/// First and longest wait between two attempts to subscribe again.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// Runs until aborted (the last handle of the cached store is destroyed or
/// dropped).
pub(super) async fn run(inner: Arc<dyn StateStore>, near: Arc<Near>, mut feed: WatchStream) {
    loop {
        let why = loop {
            match feed.next().await {
                Some(Ok(event)) => near.invalidate(&event.key),
                Some(Err(e)) => break e.to_string(),
                None => break "the change feed ended".to_owned(),
            }
        };
        // Events may be lost: nothing cached can be trusted any more.
        near.suspend();
        drop(feed);
        tracing::warn!(store = inner.name(), reason = %why, "near cache emptied: its change feed was interrupted");
        feed = subscribe(&*inner).await;
        near.resume();
        tracing::info!(store = inner.name(), "near cache serving again: its change feed is back");
    }
}

/// Subscribes again, waiting longer after each failure.
async fn subscribe(inner: &dyn StateStore) -> WatchStream {
    let mut wait = BACKOFF.0;
    loop {
        match inner.invalidations("").await {
            Ok(feed) => return feed,
            Err(e) => {
                tracing::debug!(store = inner.name(), error = %e, "near cache: cannot watch yet");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(BACKOFF.1);
            }
        }
    }
}
