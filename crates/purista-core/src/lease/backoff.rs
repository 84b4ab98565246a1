//! How long a waiter sleeps before trying again: jittered exponential
//! backoff, so waiters neither spin nor retry in lockstep, cut short when the
//! holder's TTL runs out sooner.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) struct Backoff {
    next: Duration,
    cap: Duration,
    rng: u64,
}

impl Backoff {
    /// Starts at a 16th of `ttl` (5 ms to 250 ms), doubling up to a quarter
    /// of it (at most 2 s): a released lease is noticed within that.
    pub(crate) fn new(ttl: Duration) -> Self {
        let first = (ttl / 16).clamp(Duration::from_millis(5), Duration::from_millis(250));
        let cap = (ttl / 4).clamp(first, Duration::from_secs(2));
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        Backoff { next: first, cap, rng: u64::from(nanos) | 1 }
    }

    /// The next pause: between half and all of the current step, or until
    /// just after `expires_at` when that comes first.
    pub(crate) fn next(&mut self, expires_at: Option<SystemTime>) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.cap);
        let half = step / 2;
        let pause = half + half.mul_f64(self.unit());
        match expires_at.and_then(|at| at.duration_since(SystemTime::now()).ok()) {
            Some(left) if left < pause => left + Duration::from_millis(1) + half.mul_f64(self.unit() / 4.0),
            _ => pause,
        }
    }

    /// A number in [0, 1) (xorshift; jitter needs no better).
    fn unit(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_secs(4));
        let pauses: Vec<Duration> = (0..8).map(|_| b.next(None)).collect();
        assert!(pauses[0] >= Duration::from_millis(125) && pauses[0] <= Duration::from_millis(250));
        assert!(pauses.iter().all(|p| *p <= Duration::from_secs(1)), "{pauses:?}");
        assert!(pauses[7] >= Duration::from_millis(500), "{pauses:?}");
    }

    #[test]
    fn a_nearer_expiry_cuts_the_pause_short() {
        let mut b = Backoff::new(Duration::from_secs(60));
        let soon = SystemTime::now() + Duration::from_millis(20);
        assert!(b.next(Some(soon)) < Duration::from_millis(200));
    }
}
