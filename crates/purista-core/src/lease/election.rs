//! Leader election: instances campaign for one lock; whoever holds it leads
//! until it is lost or resigned, then another takes over.

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
};

use super::LockGuard;
use crate::StateStore;

/// What this instance is in an [`Election`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Another instance leads, or none does yet.
    Follower,
    /// This instance leads; writes that must come from the leader use this
    /// token's fence (through [`Election::leader`]).
    Leader {
        /// The lease's fencing token.
        token: u64,
    },
}

/// One instance's campaign: runs in the background from
/// [`start`](Election::start) until [`resign`](Election::resign) or drop.
///
/// Exactly one campaigner holds the lease at a time; a leader paused past
/// the TTL may still *believe* it leads, so its writes must be fenced
/// ([`leader`](Election::leader) hands out the guard).
#[derive(Debug)]
pub struct Election {
    /// The lock while this instance leads: the one source of its role.
    guard: watch::Receiver<Option<Arc<LockGuard>>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Election {
    /// Starts campaigning for `name` with leases of `ttl` (needs a Tokio runtime).
    pub fn start(store: Arc<dyn StateStore>, name: &str, ttl: Duration) -> Election {
        let (guard_tx, guard) = watch::channel(None);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(campaign(store, name.to_owned(), ttl, guard_tx, stopped));
        Election { guard, stop: Some(stop), task }
    }

    /// This instance's role now.
    pub fn role(&self) -> Role {
        role_of(&self.guard.borrow())
    }

    /// Every change of role, for `changed().await` in a select loop.
    pub fn roles(&self) -> Roles {
        let mut guard = self.guard.clone();
        // Changes from now on.
        guard.mark_unchanged();
        Roles(guard)
    }

    /// The lock while this instance leads: its token and fenced writes.
    pub fn leader(&self) -> Option<Arc<LockGuard>> {
        self.guard.borrow().clone()
    }

    /// Stops campaigning, and hands leadership over if this instance leads.
    pub async fn resign(mut self) {
        if let Some(stop) = self.stop.take() {
            _ = stop.send(());
        }
        _ = (&mut self.task).await;
    }
}

/// The changes of one instance's [`Role`] ([`Election::roles`]).
#[derive(Debug, Clone)]
pub struct Roles(watch::Receiver<Option<Arc<LockGuard>>>);

impl Roles {
    /// The role now.
    pub fn current(&self) -> Role {
        role_of(&self.0.borrow())
    }

    /// Waits for the role to change and returns the new one; `None` once
    /// the election has stopped.
    pub async fn changed(&mut self) -> Option<Role> {
        self.0.changed().await.ok()?;
        Some(role_of(&self.0.borrow_and_update()))
    }
}

fn role_of(guard: &Option<Arc<LockGuard>>) -> Role {
    match guard {
        Some(guard) => Role::Leader { token: guard.token() },
        None => Role::Follower,
    }
}

impl Drop for Election {
    fn drop(&mut self) {
        // Resigning awaited the task; otherwise the lock's guard is dropped
        // with it, which releases the lease in the background.
        self.task.abort();
    }
}

async fn campaign(
    store: Arc<dyn StateStore>,
    name: String,
    ttl: Duration,
    guard_tx: watch::Sender<Option<Arc<LockGuard>>>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let acquired = tokio::select! {
            _ = &mut stop => return,
            acquired = LockGuard::acquire(store.clone(), &name, ttl, ttl) => acquired,
        };
        let guard = match acquired {
            Ok(Some(guard)) => Arc::new(guard),
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(election = %name, error = %e, "campaign failed; retrying");
                tokio::select! {
                    _ = &mut stop => return,
                    () = tokio::time::sleep(ttl / 4) => continue,
                }
            }
        };
        guard_tx.send_replace(Some(guard.clone()));
        let resigned = tokio::select! {
            _ = &mut stop => true,
            () = guard.lost() => false,
        };
        guard_tx.send_replace(None);
        if resigned {
            // Release now when nobody else holds the guard, else on its drop.
            if let Ok(guard) = Arc::try_unwrap(guard) {
                _ = guard.release().await;
            }
            return;
        }
    }
}
