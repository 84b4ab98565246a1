//! The thread that purges expired entries and reports them to watchers.
//!
//! A thread rather than a task: the store must not depend on the runtime
//! that happened to write first outliving it. It holds the store weakly, so
//! dropping the store ends it.

use std::{
    sync::{Arc, Weak},
    thread::Thread,
    time::Instant,
};

use crate::WatchKind;

use super::{Shared, shards::SHARDS};

#[derive(Debug, Default)]
pub(super) struct Reaper {
    /// Started by the first TTL write.
    thread: Option<Thread>,
    /// The deadline the thread sleeps towards; `None` while it scans or has
    /// nothing to wait for, when any new deadline must wake it.
    sleeps_until: Option<Instant>,
}

impl Reaper {
    /// Lets a sleeping thread see that the store is gone.
    pub(super) fn unpark(&self) {
        if let Some(thread) = &self.thread {
            thread.unpark();
        }
    }
}

/// After a write set `deadline`: starts the thread, or wakes it when the
/// deadline comes before the one it sleeps towards.
pub(super) fn wake(shared: &Arc<Shared>, deadline: Instant) {
    let mut reaper = shared.reaper.lock();
    match &reaper.thread {
        Some(thread) if reaper.sleeps_until.is_none_or(|t| deadline < t) => thread.unpark(),
        Some(_) => {}
        None => {
            let shared = Arc::downgrade(shared);
            // If no thread can be had, expired entries are still hidden
            // from reads and dropped when overwritten, just not purged.
            let spawned =
                std::thread::Builder::new().name("purista-store-reaper".into()).spawn(|| reap(shared));
            reaper.thread = spawned.ok().map(|h| h.thread().clone());
        }
    }
}

/// Removes entries as their deadlines pass, shard by shard.
fn reap(shared: Weak<Shared>) {
    loop {
        let next = {
            let Some(shared) = shared.upgrade() else { return };
            // From here until the scan is over, every new deadline wakes the
            // thread (an unpark makes the next park return at once): a
            // deadline set in a shard already scanned is not missed.
            shared.reaper.lock().sleeps_until = None;
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            for i in 0..SHARDS {
                let mut shard = shared.shards.write_at(i);
                let (gone, first) = shard.purge(now);
                // Reported under the shard's lock: in write order per key.
                for key in gone {
                    shared.emit(&key, WatchKind::Expired);
                }
                next = sooner(next, first);
            }
            shared.reaper.lock().sleeps_until = next;
            next
        };
        match next {
            Some(deadline) => std::thread::park_timeout(deadline.saturating_duration_since(Instant::now())),
            None => std::thread::park(),
        }
    }
}

/// The earlier of two deadlines, either of which may be missing.
pub(super) fn sooner(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
