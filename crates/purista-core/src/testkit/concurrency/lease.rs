//! Leases under concurrency and faults: clients on instances of their own
//! take one lease in turn and write a resource under it with fenced writes.
//! One grant in four, the holder pauses past its TTL before writing (a GC
//! pause, a frozen process), so its write comes after the lease could have
//! gone to another. The history is judged by
//! [`check_fencing`](super::fencing::check_fencing).

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use super::{drive::*, fencing::*, workload::*, *};
use crate::testkit::{Factory, unique};
use crate::{Lease, PutOptions, StateStore};

/// What the clients saw.
struct Seen {
    start: Instant,
    history: Mutex<LeaseHistory>,
    refused: AtomicUsize,
    unknown: AtomicUsize,
    unexpected: Mutex<Vec<String>>,
}

impl Seen {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn at(&self, instant: Instant) -> Duration {
        instant.saturating_duration_since(self.start)
    }
}

/// Runs lease holders on `workload.instances` instances while `fault` runs
/// (a tenth of `ops_per_client` rounds each, a fortieth where TTLs are whole
/// seconds), then checks that
/// tokens strictly increase, leases never overlap, and no stale holder's
/// fenced write is accepted after a newer holder's. Needs ETags,
/// create-only writes, TTLs and transactions.
pub async fn lease_with(
    factory: &impl Factory,
    workload: Workload,
    fault: impl Future<Output = ()> + Send,
) -> Report {
    run(factory, workload, fault, true).await
}

/// [`lease_with`] on a lock whose fenced writes skip the fence: only for
/// showing that the check catches it.
#[doc(hidden)]
pub async fn lease_unfenced(factory: &impl Factory, workload: Workload) -> Report {
    run(factory, workload, async {}, false).await
}

async fn run(
    factory: &impl Factory,
    mut workload: Workload,
    fault: impl Future<Output = ()> + Send,
    fenced: bool,
) -> Report {
    let (mut report, stores) = match begin("lease", factory, &workload).await {
        Ok(begun) => begun,
        Err(skipped) => return skipped,
    };
    let caps = stores[0].capabilities();
    let Some(step) = caps.ttl.filter(|_| caps.etag && caps.create_only && caps.transactions) else {
        let why = format!("{} lacks ETags, create-only writes, TTLs or transactions", report.store);
        return report.skip(why);
    };
    // Short leases, but whole TTL steps (1 s on some stores); a round waits
    // up to a TTL for the lease, so rounds are fewer than operations.
    let ttl = step.max(Duration::from_millis(200));
    let per_round = if ttl >= Duration::from_secs(1) { 40 } else { 10 };
    workload.ops_per_client = (workload.ops_per_client / per_round).max(1);
    let name = unique("lease");
    let resource = format!("{{{name}}}:resource");
    let seen = Arc::new(Seen {
        start: Instant::now(),
        history: Mutex::default(),
        refused: AtomicUsize::new(0),
        unknown: AtomicUsize::new(0),
        unexpected: Mutex::default(),
    });
    let fault_over = Arc::new(AtomicBool::new(false));
    let clients = stores.iter().enumerate().map(|(id, store)| {
        let (store, seen, name, resource) = (store.clone(), seen.clone(), name.clone(), resource.clone());
        let mut rng = Rng::new(report.seed, id as u64);
        let mut pace = Pace::new(&workload, fault_over.clone());
        let timeout = workload.op_timeout;
        async move {
            let holder = Holder { id, store, seen, resource, ttl, timeout, fenced };
            while pace.next(&mut rng).await {
                holder.round(&name, &mut rng).await;
            }
        }
    });
    drive(clients.collect(), fault, &fault_over).await;
    report.run_time = seen.start.elapsed();
    let keys = [crate::lease::fence_key(&name), crate::lease::holder_key(&name), resource];
    cleanup(&stores, &keys).await;

    let history = std::mem::take(&mut *seen.history.lock());
    report.histories = 1;
    report.ops = history.grants.len() + history.accepted.len();
    report.conflicts = seen.refused.load(Ordering::Relaxed);
    report.indeterminate = seen.unknown.load(Ordering::Relaxed);
    let checking = Instant::now();
    let mut found = std::mem::take(&mut *seen.unexpected.lock());
    if history.grants.len() < 2 || history.accepted.is_empty() {
        found.push(format!(
            "too little happened to check: {} grants, {} accepted writes",
            history.grants.len(),
            history.accepted.len()
        ));
    }
    found.extend(check_fencing(&history));
    report.check_time = checking.elapsed();
    finish(report, found)
}

/// One client.
struct Holder {
    id: usize,
    store: Arc<dyn StateStore>,
    seen: Arc<Seen>,
    resource: String,
    ttl: Duration,
    timeout: Duration,
    fenced: bool,
}

impl Holder {
    /// Waits up to a TTL for the lease; holding it, writes one to three times (one
    /// grant in four pausing past the TTL first), renews now and then, and
    /// releases it or lets it expire.
    async fn round(&self, name: &str, rng: &mut Rng) {
        let invoked = self.seen.now();
        let acquire = Lease::acquire(self.store.clone(), name, self.ttl, self.ttl);
        let lease = match attempt(self.timeout + self.ttl, acquire).await {
            Answer::Done(Some(lease)) => lease,
            Answer::Done(None) => return,
            Answer::Unknown | Answer::Conflict => return self.count(&self.seen.unknown),
            Answer::Failed(e) => return self.unexpected(format!("acquire: {e:?}")),
        };
        let mut lease = if self.fenced { lease } else { lease.unfenced() };
        let record = GrantRecord {
            client: self.id,
            token: lease.token(),
            invoked,
            completed: self.seen.now(),
            valid_until: self.seen.at(lease.valid_until()),
        };
        let grant = {
            let mut history = self.seen.history.lock();
            history.grants.push(record);
            history.grants.len() - 1
        };
        for _ in 0..1 + rng.below(3) {
            if rng.below(4) == 0 {
                tokio::time::sleep(self.ttl + self.ttl / 2).await;
            } else if rng.below(3) == 0
                && matches!(attempt(self.timeout, lease.renew()).await, Answer::Done(()))
            {
                let until = self.seen.at(lease.valid_until());
                self.seen.history.lock().grants[grant].valid_until = until;
            }
            self.write(&lease, rng).await;
        }
        if rng.below(4) != 0 {
            // Done with it: the lease is no longer believed held from here.
            let released = self.seen.now();
            {
                let mut history = self.seen.history.lock();
                let cut = &mut history.grants[grant].valid_until;
                *cut = (*cut).min(released);
            }
            _ = attempt(self.timeout, lease.release()).await;
        }
    }

    async fn write(&self, lease: &Lease, rng: &mut Rng) {
        let value = json(serde_json::json!({ "token": lease.token(), "client": self.id, "n": rng.next() }));
        let invoked = self.seen.now();
        match attempt(self.timeout, lease.fenced_put(&self.resource, value, PutOptions::default())).await {
            Answer::Done(()) => {
                let record = WriteRecord {
                    client: self.id,
                    token: lease.token(),
                    invoked,
                    completed: self.seen.now(),
                };
                self.seen.history.lock().accepted.push(record);
            }
            Answer::Conflict => self.count(&self.seen.refused),
            Answer::Unknown => self.count(&self.seen.unknown),
            Answer::Failed(e) => self.unexpected(format!("fenced write: {e:?}")),
        }
    }

    fn count(&self, counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn unexpected(&self, what: String) {
        self.seen.unexpected.lock().push(format!("client {}: {what}", self.id));
    }
}
