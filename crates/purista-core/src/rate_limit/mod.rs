//! Rate limits on top of the store: a request budget per caller key and
//! window, counted with [`StateStore::increment`], so every instance sharing
//! the store counts into the same window.

#[cfg(test)]
mod tests;
mod window;

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::future::join;

use crate::{Capability, Error, ErrorKind, HandlerError, Result, StateStore, backend::MAX_TTL};

/// At most `limit` requests per `window` and caller key, on any store with
/// [`Capabilities::counters`](crate::Capabilities) and a TTL.
///
/// Windows are aligned to the Unix epoch, as the instance's clock reads it:
/// window `n` of a key is the counter `<key>:<kind>-<window>:<n>`
/// (`search:user-1:fixed-60s:29601234`), created with a TTL of a few
/// windows and never touched again once its window is over. Instances are
/// assumed to agree on the time to well within a window (NTP keeps them
/// within milliseconds): an instance whose clock is off by `s` counts its
/// requests of the first or last `s` of a window into the neighbouring one.
///
/// - [`fixed_window`](RateLimit::fixed_window): one counter per window. Exact
///   under any concurrency (the increment is atomic, and its result decides),
///   but a burst at the end of one window and another at the start of the
///   next can pass twice `limit` in a short time.
/// - [`sliding_window`](RateLimit::sliding_window): the current window's
///   count plus the previous window's, weighted by how much of it a window
///   ending now still covers. Smooths the boundary burst away.
///
/// Only `check` touches the store; a `RateLimit` is a plain value, best kept
/// in a `const`:
///
/// ```
/// use std::time::Duration;
/// use purista_core::{DefaultStateStore, RateLimit};
///
/// const SEARCH: RateLimit = RateLimit::fixed_window(2, Duration::from_secs(60));
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> purista_core::Result<()> {
/// let store = DefaultStateStore::new();
/// assert!(SEARCH.check(&store, "search:user-1").await?.allowed());
/// assert_eq!(SEARCH.check(&store, "search:user-1").await?.remaining(), 0);
/// let refused = SEARCH.check(&store, "search:user-1").await?;
/// assert!(!refused.allowed());
/// assert!(refused.retry_after().is_some_and(|wait| wait <= Duration::from_secs(60)));
/// // In a handler: `SEARCH.check(&*ctx.states, &key).await?.into_result()?;`
/// // answers 429 with the wait.
/// assert_eq!(refused.into_result().unwrap_err().status(), 429);
/// // Other keys have their own budget.
/// assert!(SEARCH.check(&store, "search:user-2").await?.allowed());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    limit: u64,
    window: Duration,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fixed,
    Sliding,
}

impl RateLimit {
    /// `limit` requests per window of `window`, windows back to back. Every
    /// check counts, refused ones too (one increment per check); a refused
    /// check's `retry_after` is the end of the window.
    ///
    /// A zero `limit` or `window` is an `InvalidArgument` error of `check`.
    pub const fn fixed_window(limit: u64, window: Duration) -> Self {
        RateLimit { limit, window, kind: Kind::Fixed }
    }

    /// `limit` requests in any `window`, estimated from two fixed windows:
    /// the current one's count plus the previous one's, weighted by the
    /// share of it the sliding window still covers (rounded down). The
    /// estimate assumes the previous window's requests were spread evenly,
    /// so a window ending now holds at most `limit` when they were, and at
    /// most about `2 * limit` when they all came at its end; no fixed
    /// window ever passes more than `limit`. Refused checks are given back
    /// (a second increment), so they do not weigh on the next window.
    ///
    /// Chosen over GCRA because it needs only an atomic increment and a
    /// read, sent together: one round trip per check on every store, native
    /// speed where the increment is native (Redis), and no retries under a
    /// burst. GCRA keeps one timestamp per key that every check rewrites by
    /// compare-and-swap, so it needs ETags, and a burst from many instances
    /// makes all but one writer per round retry.
    ///
    /// A zero `limit` or `window` is an `InvalidArgument` error of `check`.
    pub const fn sliding_window(limit: u64, window: Duration) -> Self {
        RateLimit { limit, window, kind: Kind::Sliding }
    }

    /// The requests allowed per window.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The window's length.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Counts one request of `key` and tells whether it is allowed.
    ///
    /// Fails with `InvalidArgument` for a zero limit or window (or one so
    /// long that its counters would outlive [`MAX_TTL`](crate::backend::MAX_TTL)),
    /// `InvalidKey` for an empty key,
    /// `Unsupported` on a store without counters or TTL, and with the
    /// store's error when it cannot be reached.
    pub async fn check(&self, store: &dyn StateStore, key: &str) -> Result<Decision> {
        // A clock before 1970 is broken beyond what a rate limit can fix;
        // every instance with it lands in window 0 rather than panicking.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.check_at(store, key, now).await
    }

    /// [`check`](RateLimit::check) at `now` (since the Unix epoch).
    pub(crate) async fn check_at(
        &self,
        store: &dyn StateStore,
        key: &str,
        now: Duration,
    ) -> Result<Decision> {
        let ttl = self.validate(store, key)?;
        let window = self.window.as_nanos();
        let (index, elapsed) = (now.as_nanos() / window, now.as_nanos() % window);
        let current = self.counter_key(key, index);
        match self.kind {
            Kind::Fixed => {
                let count = store.increment(&current, 1, Some(ttl)).await?;
                Ok(window::fixed(self.limit, window, elapsed, count))
            }
            Kind::Sliding => {
                let previous = async {
                    match index.checked_sub(1) {
                        Some(i) => read_count(store, &self.counter_key(key, i)).await,
                        None => Ok(0),
                    }
                };
                let (previous, count) = join(previous, store.increment(&current, 1, Some(ttl))).await;
                let count = count?;
                let decision = match previous {
                    Ok(previous) => window::sliding(self.limit, window, elapsed, previous, count),
                    Err(e) => {
                        give_back(store, &current, ttl).await;
                        return Err(e);
                    }
                };
                if !decision.allowed() {
                    give_back(store, &current, ttl).await;
                }
                Ok(decision)
            }
        }
    }

    /// The TTL of a window's counter, once the arguments and the store are
    /// known to be fit.
    fn validate(&self, store: &dyn StateStore, key: &str) -> Result<Duration> {
        if self.limit == 0 {
            return Err(Error::new(ErrorKind::InvalidArgument, "a rate limit allows at least 1 request"));
        }
        if self.window.is_zero() {
            return Err(Error::new(ErrorKind::InvalidArgument, "a rate-limit window cannot be zero"));
        }
        // The counter outlives its window by a window (fixed) or two
        // (sliding: the next window reads it): room for clocks that lag.
        let windows = match self.kind {
            Kind::Fixed => 2,
            Kind::Sliding => 3,
        };
        let ttl = self.window.checked_mul(windows).filter(|ttl| *ttl <= MAX_TTL).ok_or_else(|| {
            let most = MAX_TTL.as_secs() / u64::from(windows);
            let msg =
                format!("a rate-limit window is at most {most}s here: its counters live {windows} windows");
            Error::new(ErrorKind::InvalidArgument, msg)
        })?;
        if key.is_empty() {
            return Err(Error::new(ErrorKind::InvalidKey, "a rate-limit key cannot be empty"));
        }
        store.capabilities().require(
            store.name(),
            "rate limits",
            &[Capability::Counters, Capability::Ttl],
        )?;
        Ok(ttl)
    }

    /// The counter of window `index` of `key`.
    fn counter_key(&self, key: &str, index: u128) -> String {
        let kind = match self.kind {
            Kind::Fixed => "fixed",
            Kind::Sliding => "sliding",
        };
        format!("{key}:{kind}-{}:{index}", window::label(self.window))
    }
}

/// A window's count; a missing counter is 0.
async fn read_count(store: &dyn StateStore, key: &str) -> Result<i64> {
    match store.get_value(key).await? {
        None => Ok(0),
        Some(json) => crate::backend::counter_value(key, &json),
    }
}

/// Uncounts a refused or failed check. If that fails too, the check keeps
/// counting until its window ends: the limit errs on the strict side.
async fn give_back(store: &dyn StateStore, key: &str, ttl: Duration) {
    if let Err(e) = store.increment(key, -1, Some(ttl)).await {
        tracing::warn!(error = %e, "rate limit: a refused request still counts in its window");
    }
}

/// What [`RateLimit::check`] decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    limit: u64,
    remaining: u64,
    retry_after: Option<Duration>,
}

impl Decision {
    pub(crate) fn allow(limit: u64, remaining: u64) -> Self {
        Decision { limit, remaining, retry_after: None }
    }

    pub(crate) fn refuse(limit: u64, retry_after: Duration) -> Self {
        Decision { limit, remaining: 0, retry_after: Some(retry_after) }
    }

    /// Whether the request may go on.
    pub fn allowed(&self) -> bool {
        self.retry_after.is_none()
    }

    /// The limit it was checked against.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// How many more requests the window allows now (0 when refused).
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// For a refused request, how long until a check would pass if no other
    /// request came in: more than zero, at most one window. `None` when
    /// allowed.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The decision when allowed, else a [`RateLimited`] error that a
    /// handler can `?` (it becomes a 429 [`HandlerError`]).
    pub fn into_result(self) -> Result<Decision, RateLimited> {
        match self.retry_after {
            None => Ok(self),
            Some(retry_after) => Err(RateLimited { limit: self.limit, retry_after }),
        }
    }
}

/// A request refused by a [`RateLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    limit: u64,
    retry_after: Duration,
}

impl RateLimited {
    /// How long to wait before trying again.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// Whole seconds to wait, rounded up (an HTTP `Retry-After` value).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0)
    }

    /// The limit that was exceeded.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// 429, Too Many Requests.
    pub fn status(&self) -> u16 {
        429
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Whole milliseconds, rounded up, read better than nanoseconds.
        let millis = self.retry_after.as_nanos().div_ceil(1_000_000);
        let wait = Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX));
        write!(f, "rate limit exceeded ({} per window); retry after {wait:?}", self.limit)
    }
}

impl std::error::Error for RateLimited {}

impl From<RateLimited> for HandlerError {
    fn from(err: RateLimited) -> Self {
        HandlerError::new(err.status(), err.to_string())
    }
}
