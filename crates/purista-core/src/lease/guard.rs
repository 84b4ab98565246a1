//! A lock: a lease renewed in the background, which tells its holder when
//! it is lost.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{sync::watch, task::JoinHandle};

use super::Lease;
use crate::{ErrorKind, Json, Op, PutOptions, Result, StateStore};

/// A held lock: its lease is renewed every third of its TTL until it is
/// released or dropped, or a renewal fails for good.
///
/// [`lost`](LockGuard::lost) resolves when the lock is lost (a renewal found
/// the lease gone, or none landed before the lease ran out): select on it
/// beside the work. Writes that must not outlive the lock go through
/// [`fenced_put`](LockGuard::fenced_put). Dropping the guard releases the
/// lock in the background; [`release`](LockGuard::release) does it now.
#[derive(Debug)]
pub struct LockGuard {
    lease: Lease,
    /// `Some(valid until)` while held, `None` once lost.
    state: watch::Receiver<Option<Instant>>,
    renewer: JoinHandle<()>,
    released: bool,
}

impl LockGuard {
    /// Takes the lock named `name`, waiting up to `wait`; `None` if another
    /// holder still has it then.
    pub async fn acquire(
        store: Arc<dyn StateStore>,
        name: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Option<LockGuard>> {
        Ok(Lease::acquire(store, name, ttl, wait).await?.map(LockGuard::hold))
    }

    /// Keeps `lease` renewed in the background (needs a Tokio runtime).
    pub fn hold(lease: Lease) -> LockGuard {
        let (tx, state) = watch::channel(Some(lease.valid_until));
        let renewer = tokio::spawn(renew(lease.clone(), tx));
        LockGuard { lease, state, renewer, released: false }
    }

    /// The lease's fencing token.
    pub fn token(&self) -> u64 {
        self.lease.token
    }

    /// The lease as granted (its `valid_until` is the first grant's).
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Whether the lock is held, by this process's clock.
    pub fn is_held(&self) -> bool {
        self.state.borrow().is_some_and(|until| Instant::now() < until)
    }

    /// Resolves once the lock is lost; at once if it already is.
    pub async fn lost(&self) {
        let mut state = self.state.clone();
        loop {
            let Some(until) = *state.borrow_and_update() else { return };
            tokio::select! {
                () = tokio::time::sleep_until(until.into()) => {
                    if state.borrow().is_none_or(|u| u <= Instant::now()) {
                        return;
                    }
                }
                changed = state.changed() => if changed.is_err() { return },
            }
        }
    }

    /// [`Lease::fenced_put`].
    pub async fn fenced_put(&self, key: &str, value: Json, options: PutOptions) -> Result<()> {
        self.lease.fenced_put(key, value, options).await
    }

    /// [`Lease::fenced_transaction`].
    pub async fn fenced_transaction(&self, ops: Vec<Op>) -> Result<()> {
        self.lease.fenced_transaction(ops).await
    }

    /// Stops renewing and releases the lock.
    pub async fn release(mut self) -> Result<()> {
        self.released = true;
        self.renewer.abort();
        self.lease.clone().release().await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.renewer.abort();
        if !self.released
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let lease = self.lease.clone();
            // Best effort: an unreleased lease expires by itself.
            runtime.spawn(async move { _ = lease.release().await });
        }
    }
}

/// Renews every third of the TTL; a failed renewal is retried sooner, until
/// the lease runs out. Publishes each new validity, then `None` when lost.
async fn renew(mut lease: Lease, state: watch::Sender<Option<Instant>>) {
    let every = lease.ttl / 3;
    let mut pause = every;
    loop {
        tokio::time::sleep(pause).await;
        let deadline = lease.valid_until;
        match tokio::time::timeout_at(deadline.into(), lease.renew()).await {
            Ok(Ok(())) => {
                state.send_replace(Some(lease.valid_until));
                pause = every;
            }
            Ok(Err(e)) if e.kind() != ErrorKind::Conflict && Instant::now() < deadline => {
                tracing::debug!(lease = %lease.name, error = %e, "lease renewal failed; retrying");
                pause = (every / 4).max(Duration::from_millis(1));
            }
            _ => break,
        }
    }
    state.send_replace(None);
}
