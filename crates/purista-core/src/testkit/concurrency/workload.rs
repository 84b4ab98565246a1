//! What the clients do: the workload, its operation mix, and the seeded
//! random choices.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Capabilities;

/// What the clients do.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Store instances (each from [`Factory::store`](crate::testkit::Factory::store), so its own connection).
    pub instances: usize,
    /// Clients sharing each instance, each on a task of its own (at least
    /// one): more than one meets what one instance does with concurrent
    /// calls of its own, such as [combined increments](crate::backend::Combiner).
    pub clients_per_instance: usize,
    /// Keys the clients share ([`bank`](crate::testkit::bank) uses 8 accounts whatever this says).
    pub keys: usize,
    /// Operations each client runs; a client goes on while the fault has
    /// not finished (up to 50 times as many), so that the fault meets traffic.
    pub ops_per_client: usize,
    /// How often each operation is picked ([`bank`](crate::testkit::bank): half transfers, half reads).
    pub mix: Mix,
    /// A client pauses up to this long (at random) between operations; with
    /// zero it yields instead, now and then.
    pub think: Duration,
    /// An operation still running after this long is abandoned as
    /// indeterminate (set the store's own request timeout below it).
    pub op_timeout: Duration,
    /// The seed of every random choice (default: `PURISTA_TESTKIT_SEED`,
    /// else the clock). It replays the choices, not the timing.
    pub seed: Option<u64>,
}

impl Default for Workload {
    /// Eight clients, four keys, 200 operations each: some 1,600 calls,
    /// enough for races to meet on every key, a few seconds against a
    /// local server on a loaded 2-core machine (the Dapr emulator takes
    /// longest: up to some 15 s for both checks).
    fn default() -> Self {
        Workload {
            instances: 8,
            clients_per_instance: 1,
            keys: 4,
            ops_per_client: 200,
            mix: Mix::default(),
            think: Duration::ZERO,
            op_timeout: Duration::from_secs(10),
            seed: None,
        }
    }
}

impl Workload {
    /// For a run beside a fault: `instances` clients on `keys` keys, at least
    /// 150 operations each with up to 10 ms between them (so that every
    /// client is in a call when the fault strikes), a call given up as
    /// indeterminate after `op_timeout`.
    pub fn with_fault(instances: usize, keys: usize, op_timeout: Duration) -> Self {
        Workload {
            instances,
            keys,
            ops_per_client: 150,
            think: Duration::from_millis(10),
            op_timeout,
            ..Workload::default()
        }
    }
}

/// Relative weights of the operations [`linearizable`](crate::testkit::linearizable) runs. Operations a
/// store's capabilities lack are left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    /// `get_value`, or `get_entry` (which also learns an ETag).
    pub get: u32,
    /// `get_state` of every key.
    pub get_state: u32,
    /// `set_state`, or `put` (which may return an ETag).
    pub upsert: u32,
    /// `put` with `PutOptions::create()`.
    pub create: u32,
    /// `put` with `PutOptions::update(etag)`, with a recent or stale ETag.
    pub update: u32,
    /// `remove` without an ETag.
    pub remove: u32,
    /// `remove` with a recent or stale ETag.
    pub remove_if: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix { get: 3, get_state: 1, upsert: 2, create: 1, update: 3, remove: 1, remove_if: 1 }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Choice {
    Get,
    GetState,
    Upsert,
    Create,
    Update,
    Remove,
    RemoveIf,
}

impl Mix {
    pub(super) fn allowed(mut self, caps: Capabilities) -> Mix {
        if !caps.etag {
            (self.update, self.remove_if) = (0, 0);
        }
        if !caps.create_only {
            self.create = 0;
        }
        self
    }

    pub(super) fn weights(&self) -> [(Choice, u32); 7] {
        [
            (Choice::Get, self.get),
            (Choice::GetState, self.get_state),
            (Choice::Upsert, self.upsert),
            (Choice::Create, self.create),
            (Choice::Update, self.update),
            (Choice::Remove, self.remove),
            (Choice::RemoveIf, self.remove_if),
        ]
    }

    pub(super) fn total(&self) -> u64 {
        self.weights().iter().map(|(_, w)| u64::from(*w)).sum()
    }

    pub(super) fn pick(&self, rng: &mut Rng) -> Choice {
        let mut n = rng.next() % self.total().max(1);
        for (choice, weight) in self.weights() {
            if n < u64::from(weight) {
                return choice;
            }
            n -= u64::from(weight);
        }
        Choice::Get
    }
}

/// The seed: the workload's, else `PURISTA_TESTKIT_SEED` (decimal or `0x`
/// hex), else the clock.
pub(super) fn seed(workload: &Workload) -> u64 {
    if let Some(seed) = workload.seed {
        return seed;
    }
    if let Ok(text) = std::env::var("PURISTA_TESTKIT_SEED") {
        let text = text.trim();
        let parsed = match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
        };
        return parsed.unwrap_or_else(|_| panic!("PURISTA_TESTKIT_SEED={text:?} is not a number"));
    }
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    nanos ^ u64::from(std::process::id()) << 32
}

/// SplitMix64: small, fast, and enough for picking operations.
#[derive(Debug, Clone)]
pub(super) struct Rng(u64);

impl Rng {
    /// The stream of client `stream` for `seed`.
    pub(super) fn new(seed: u64, stream: u64) -> Self {
        Rng(seed ^ stream.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub(super) fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}
