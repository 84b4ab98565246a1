//! Leases with fencing tokens, for every store with ETags, create-only
//! writes, TTLs and transactions: built once, on the contract.
//!
//! A lease named `n` lives in two keys:
//! - `{n}:fence`, the last token granted: a JSON integer with no TTL, which
//!   only grows;
//! - `{n}:holder`, `{"token": t, "holder": "…"}` with the lease's TTL,
//!   present while the lease is held.
//!
//! A grant is one transaction: the fence moves from `t` to `t + 1` under its
//! ETag and the holder key is created with `t + 1`. So each token is granted
//! once, tokens strictly increase for as long as the store keeps the fence
//! key, and nobody is granted the lease while the holder key lives. A fenced
//! write is a transaction that rewrites the fence under its ETag beside the
//! caller's writes: it applies only while no newer token has been granted.
//! The braces make Redis Cluster hash both keys to one slot; there, keys
//! written under a lease must carry the same hash tag (`{n}`).
//!
//! Grant, renewal and release are [`LeaseStep`]s, taken through
//! [`StateStore::lease_step`]: built here from the calls above, or natively
//! by a backend with the same keys and formats (Redis: one script each).

mod backoff;
mod election;
mod guard;
mod step;

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

pub use election::{Election, Role, Roles};
pub use guard::LockGuard;
pub(crate) use step::by_transactions;
pub use step::{LeaseAnswer, LeaseStep, fence_key, holder_key};

use crate::{Capability, Error, ErrorKind, Json, Op, PutOptions, Result, StateStore};
use backoff::Backoff;
use step::fence_token;

/// How often a fenced write retries after another fenced write of the same
/// token moved the fence's ETag (when the conflict names no key).
const UNNAMED_CONFLICTS: usize = 8;

/// A granted lease: the right to act for `name` until it expires, with a
/// fencing token no earlier grant had.
///
/// A lease is a promise made by a clock: a holder paused past its TTL (a GC
/// pause, a frozen VM) does not know it lost the lease. Write under it with
/// [`fenced_put`](Lease::fenced_put) or
/// [`fenced_transaction`](Lease::fenced_transaction): those are refused once a
/// newer token was granted, whatever the holder believes.
#[derive(Clone)]
pub struct Lease {
    store: Arc<dyn StateStore>,
    name: String,
    token: u64,
    ttl: Duration,
    valid_until: Instant,
    fenced: bool,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("store", &self.store.name())
            .field("name", &self.name)
            .field("token", &self.token)
            .field("ttl", &self.ttl)
            .field("valid_until", &self.valid_until)
            .finish()
    }
}

/// What one grant attempt found.
pub(crate) enum Grant {
    Granted(Lease),
    /// Someone holds it, until about `expires_at` if the store said.
    Held {
        expires_at: Option<SystemTime>,
    },
}

impl Lease {
    /// Takes the lease if nobody holds it; `None` if somebody does.
    ///
    /// An error of kind `Timeout` or `Unavailable` leaves the outcome
    /// unknown: a grant that did land expires after `ttl`.
    pub async fn try_acquire(store: Arc<dyn StateStore>, name: &str, ttl: Duration) -> Result<Option<Lease>> {
        Ok(match grant(store, name, ttl).await? {
            Grant::Granted(lease) => Some(lease),
            Grant::Held { .. } => None,
        })
    }

    /// Takes the lease, waiting up to `wait` for the holder to release it or
    /// let it expire; `None` if it is still held then. Waiters retry with
    /// jittered backoff, waking when the holder's TTL runs out.
    pub async fn acquire(
        store: Arc<dyn StateStore>,
        name: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Option<Lease>> {
        let started = Instant::now();
        let mut backoff = Backoff::new(ttl);
        loop {
            match grant(store.clone(), name, ttl).await? {
                Grant::Granted(lease) => return Ok(Some(lease)),
                Grant::Held { expires_at } => {
                    let Some(left) = wait.checked_sub(started.elapsed()).filter(|l| !l.is_zero()) else {
                        return Ok(None);
                    };
                    tokio::time::sleep(backoff.next(expires_at).min(left)).await;
                }
            }
        }
    }

    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fencing token: larger than every token granted before this one.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The TTL each grant and renewal gives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Until when, by this process's clock, nobody else can be granted the
    /// lease: the last grant or renewal's send time plus the TTL.
    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// Whether [`valid_until`](Lease::valid_until) is still ahead.
    pub fn is_valid(&self) -> bool {
        Instant::now() < self.valid_until
    }

    /// Extends the lease by its TTL from now. Fails with `Conflict` if the
    /// lease was lost (it expired and may have been granted again).
    pub async fn renew(&mut self) -> Result<()> {
        let sent = Instant::now();
        let step = LeaseStep::Renew { token: self.token, ttl: self.ttl };
        match self.store.lease_step(&self.name, step).await? {
            LeaseAnswer::Done => {
                self.valid_until = sent + self.ttl;
                Ok(())
            }
            _ => Err(self.lost()),
        }
    }

    /// Gives the lease up, so a waiter gets it at once. Releasing a lease
    /// that was already lost is not an error. The fence keeps its token.
    pub async fn release(self) -> Result<()> {
        self.store.lease_step(&self.name, LeaseStep::Release { token: self.token }).await.map(drop)
    }

    /// Writes `value` under `key` unless a newer token than this lease's
    /// was granted; refused with `Conflict` then, and nothing is written.
    pub async fn fenced_put(&self, key: &str, value: Json, options: PutOptions) -> Result<()> {
        self.fenced_transaction(vec![Op::put_with(key, value, options)]).await
    }

    /// Applies `ops` as one transaction, unless a newer token than this
    /// lease's was granted (`Conflict`, nothing applied). Holding the lease
    /// is not required: only that nobody was granted it since.
    pub async fn fenced_transaction(&self, ops: Vec<Op>) -> Result<()> {
        if !self.fenced {
            return self.store.transaction(ops).await;
        }
        let fence = fence_key(&self.name);
        let mut unnamed = 0;
        loop {
            let Some(entry) = self.store.get_entry(&fence).await? else {
                return Err(self.fenced_out("the fence is gone (the store lost its data)"));
            };
            let current = fence_token(&fence, &entry.value)?;
            if current != self.token {
                return Err(self.fenced_out(&format!("token {current} was granted since")));
            }
            let mut all = Vec::with_capacity(ops.len() + 1);
            all.push(Op::put_with(&fence, entry.value, PutOptions::update(entry.etag)));
            all.extend(ops.iter().cloned());
            match self.store.transaction(all).await {
                Err(e) if e.kind() == ErrorKind::Conflict => match e.key() {
                    // Another write of this token moved the fence's ETag: retry.
                    Some(k) if k == fence => {}
                    None if unnamed < UNNAMED_CONFLICTS => unnamed += 1,
                    _ => return Err(e),
                },
                other => return other,
            }
            tokio::task::yield_now().await;
        }
    }

    /// A lease whose "fenced" writes skip the fence: only for showing that
    /// the suite's fencing check catches a lock without one.
    #[cfg(feature = "testkit")]
    #[doc(hidden)]
    pub fn unfenced(mut self) -> Self {
        self.fenced = false;
        self
    }

    fn lost(&self) -> Error {
        Error::conflict(&self.name, format!("lease lost: token {} is no longer held", self.token))
    }

    fn fenced_out(&self, why: &str) -> Error {
        Error::conflict(&self.name, format!("fenced: the write of token {} was refused: {why}", self.token))
    }
}

/// One attempt to take the lease (the store retries races with other grants).
pub(crate) async fn grant(store: Arc<dyn StateStore>, name: &str, ttl: Duration) -> Result<Grant> {
    check(&*store, ttl)?;
    // The TTL starts when the store applies the grant, after this.
    let sent = Instant::now();
    match store.lease_step(name, LeaseStep::Grant { holder: holder_id(), ttl }).await? {
        LeaseAnswer::Granted { token } => {
            let name = name.to_owned();
            Ok(Grant::Granted(Lease { store, name, token, ttl, valid_until: sent + ttl, fenced: true }))
        }
        LeaseAnswer::Held { expires_at } => Ok(Grant::Held { expires_at }),
        other => Err(Error::new(ErrorKind::Backend, format!("{}: a grant answered {other:?}", store.name()))),
    }
}

/// Refuses, before any call, a store without what leases are built on.
fn check(store: &dyn StateStore, ttl: Duration) -> Result<()> {
    let needs = [Capability::Etag, Capability::CreateOnly, Capability::Ttl, Capability::Transactions];
    store.capabilities().require(store.name(), "leases", &needs)?;
    if ttl.is_zero() {
        return Err(Error::new(ErrorKind::InvalidArgument, "a lease's TTL must be above zero"));
    }
    Ok(())
}

/// A name for this grant's holder, for people reading the store.
fn holder_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}
