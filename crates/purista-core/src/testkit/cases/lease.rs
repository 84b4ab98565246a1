//! Leases, locks and elections, across instances: one holder at a time,
//! tokens that only grow, fenced writes refused once a newer token exists.

use std::{sync::Arc, time::Duration};

use serde_json::json;

use super::support::*;
use crate::{
    ErrorKind, Json, Lease, LockGuard, PutOptions, Role, StateStore,
    lease::{Election, fence_key, holder_key},
    testkit::{Factory, unique},
};

/// A lease TTL the store can keep (whole TTL steps), at least `floor`.
fn ttl_of(store: &dyn StateStore, floor: Duration) -> Duration {
    store.capabilities().ttl.unwrap_or_default().max(floor)
}

async fn cleanup(store: &dyn StateStore, name: &str, extra: &[&str]) {
    for key in [fence_key(name), holder_key(name)].iter().map(String::as_str).chain(extra.iter().copied()) {
        _ = store.remove_state(key).await;
    }
}

/// One holder at a time across instances; release hands over with a larger
/// token; a stale lease's renewal and fenced writes are refused, and write
/// nothing; a zero TTL is `InvalidArgument`.
pub async fn lease_basics(factory: &impl Factory) {
    let (Some(a), Some(b)) = (store(factory).await, store(factory).await) else { return };
    let name = unique("lease");
    let resource = format!("{{{name}}}:resource");
    let ttl = ttl_of(&*a, Duration::from_secs(5));
    let first = Lease::try_acquire(a.clone(), &name, ttl).await.unwrap().expect("a free lease is granted");
    assert!(first.is_valid());
    assert!(Lease::try_acquire(b.clone(), &name, ttl).await.unwrap().is_none(), "held by the first");
    first.fenced_put(&resource, Json::from(json!("one")), PutOptions::default()).await.unwrap();

    let token = first.token();
    first.clone().release().await.unwrap();
    let second = Lease::try_acquire(b.clone(), &name, ttl).await.unwrap().expect("released, so granted");
    assert!(second.token() > token, "tokens grow: {} after {token}", second.token());
    let refused = first.fenced_put(&resource, Json::from(json!("stale")), PutOptions::default()).await;
    expect_kind(refused, ErrorKind::Conflict, "a stale token's fenced write");
    assert_eq!(raw(&*a, &resource).await, Some(json!("one")), "the refused write wrote nothing");
    let mut stale = first.clone();
    expect_kind(stale.renew().await, ErrorKind::Conflict, "renewing a lease another holds");
    second.fenced_put(&resource, Json::from(json!("two")), PutOptions::default()).await.unwrap();
    assert_eq!(raw(&*b, &resource).await, Some(json!("two")));

    let zero = Lease::try_acquire(a.clone(), &unique("lease-zero"), Duration::ZERO).await;
    expect_kind(zero, ErrorKind::InvalidArgument, "a zero TTL");
    second.release().await.unwrap();
    cleanup(&*a, &name, &[&resource]).await;
}

/// The stored format is the same on every store, native steps or not: the
/// fence a JSON integer, the holder `{"token", "holder"}` with the TTL; a
/// fence or holder that is not one is `InvalidValue`, and nothing changes.
pub async fn lease_stored_format(factory: &impl Factory) {
    let Some(a) = store(factory).await else { return };
    let name = unique("lease-format");
    let ttl = ttl_of(&*a, Duration::from_secs(5));
    let lease = Lease::try_acquire(a.clone(), &name, ttl).await.unwrap().expect("granted");
    assert_eq!(raw(&*a, &fence_key(&name)).await, Some(json!(lease.token())));
    let holder = a.get_entry(&holder_key(&name)).await.unwrap().expect("the holder key lives");
    let stored: serde_json::Value = holder.value.decode().unwrap();
    assert_eq!(stored["token"], json!(lease.token()), "holder: {stored}");
    assert!(stored["holder"].is_string(), "holder: {stored}");
    assert!(holder.expires_at.is_some(), "the holder key has the lease's TTL");

    a.set_state(&holder_key(&name), Json::from(json!("not a holder"))).await.unwrap();
    let mut renewing = lease.clone();
    expect_kind(renewing.renew().await, ErrorKind::InvalidValue, "renewing over a foreign holder value");
    expect_kind(lease.release().await, ErrorKind::InvalidValue, "releasing over a foreign holder value");
    assert_eq!(raw(&*a, &holder_key(&name)).await, Some(json!("not a holder")), "left alone");

    a.remove_state(&holder_key(&name)).await.unwrap();
    a.set_state(&fence_key(&name), Json::from(json!("seven"))).await.unwrap();
    let granted = Lease::try_acquire(a.clone(), &name, ttl).await;
    expect_kind(granted, ErrorKind::InvalidValue, "a grant over a fence that is no integer");
    assert_eq!(raw(&*a, &holder_key(&name)).await, None, "nothing granted");
    cleanup(&*a, &name, &[]).await;
}

/// An unrenewed lease expires and goes to a waiter, with a larger token;
/// the waiter's `acquire` does not return before the expiry.
pub async fn lease_expiry(factory: &impl Factory) {
    let (Some(a), Some(b)) = (store(factory).await, store(factory).await) else { return };
    let name = unique("lease-expiry");
    let ttl = ttl_of(&*a, Duration::from_millis(500));
    let first = Lease::try_acquire(a.clone(), &name, ttl).await.unwrap().expect("granted");
    let waited = Lease::acquire(b.clone(), &name, ttl, ttl * 10).await.unwrap();
    let second = waited.expect("granted once the first expired");
    assert!(!first.is_valid(), "granted while the first was still valid by its clock");
    assert!(second.token() > first.token());
    assert!(Lease::acquire(a.clone(), &name, ttl, Duration::from_millis(50)).await.unwrap().is_none());
    second.release().await.unwrap();
    cleanup(&*a, &name, &[]).await;
}

/// A lock guard renews past its TTL while held, and `lost` resolves once the
/// lease is taken from it (its holder key removed by another writer).
pub async fn lock_guard_renews_and_reports_loss(factory: &impl Factory) {
    let (Some(a), Some(b)) = (store(factory).await, store(factory).await) else { return };
    let name = unique("lock");
    // Renewed every half second: a loaded machine must not miss the TTL.
    let ttl = ttl_of(&*a, Duration::from_millis(1500));
    let guard = LockGuard::acquire(a.clone(), &name, ttl, ttl).await.unwrap().expect("granted");
    tokio::time::sleep(ttl * 2).await;
    assert!(guard.is_held(), "renewed in the background");
    assert!(Lease::try_acquire(b.clone(), &name, ttl).await.unwrap().is_none(), "still held");
    b.remove_state(&holder_key(&name)).await.unwrap();
    let lost = tokio::time::timeout(ttl * 3, guard.lost()).await;
    assert!(lost.is_ok(), "the guard did not notice that its lease was taken");
    assert!(!guard.is_held());
    let next = Lease::try_acquire(b.clone(), &name, ttl).await.unwrap().expect("free again");
    assert!(next.token() > guard.token());
    let refused =
        guard.fenced_put(&format!("{{{name}}}:r"), Json::from(json!(1)), PutOptions::default()).await;
    expect_kind(refused, ErrorKind::Conflict, "a lost lock's fenced write");
    next.release().await.unwrap();
    drop(guard);
    cleanup(&*a, &name, &[]).await;
}

/// Three instances campaign: one leads; when it resigns another takes over
/// with a larger token, and never two at once.
pub async fn election_hands_over(factory: &impl Factory) {
    let mut stores = Vec::new();
    for _ in 0..3 {
        let Some(s) = store(factory).await else { return };
        stores.push(s);
    }
    let name = unique("election");
    let ttl = ttl_of(&*stores[0], Duration::from_millis(500));
    let mut elections: Vec<Election> =
        stores.iter().map(|s| Election::start(s.clone(), &name, ttl)).collect();
    let (leader, token) = one_leader(&elections, ttl * 20).await;
    let mut roles: Vec<_> = elections.iter().map(Election::roles).collect();
    assert_eq!(roles[leader].current(), Role::Leader { token });
    elections.swap_remove(leader).resign().await;
    let mut resigned = roles.swap_remove(leader);
    assert_eq!(resigned.changed().await, Some(Role::Follower), "resigning ends the leadership");
    assert_eq!(resigned.changed().await, None, "a resigned election reports no more roles");
    let (next_leader, next) = one_leader(&elections, ttl * 20).await;
    assert!(next > token, "the new leader's token {next} is not above {token}");
    let seen = tokio::time::timeout(ttl * 20, async {
        loop {
            match roles[next_leader].changed().await {
                Some(Role::Leader { token }) => return token,
                Some(Role::Follower) => continue,
                None => panic!("the election stopped"),
            }
        }
    });
    assert_eq!(seen.await.expect("the new leader's role change is reported"), next);
    for e in elections {
        e.resign().await;
    }
    cleanup(&*stores[0], &name, &[]).await;
}

/// Waits for exactly one leader; panics if two lead at once or none within `wait`.
async fn one_leader(elections: &[Election], wait: Duration) -> (usize, u64) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let leaders: Vec<(usize, u64)> = elections
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e.role() {
                Role::Leader { token } => Some((i, token)),
                Role::Follower => None,
            })
            .collect();
        assert!(leaders.len() <= 1, "two leaders at once: {leaders:?}");
        if let [one] = leaders[..] {
            return one;
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader within {wait:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Leases need ETags, create-only writes, TTLs and transactions: without
/// them `try_acquire` is `Unsupported`, before anything is written.
pub async fn lease_needs_capabilities(factory: &impl Factory) {
    let Some(s) = store(factory).await else { return };
    let caps = s.capabilities();
    let name = unique("lease-unsupported");
    let result = Lease::try_acquire(Arc::clone(&s), &name, Duration::from_secs(1)).await;
    if caps.etag && caps.create_only && caps.ttl.is_some() && caps.transactions {
        result.unwrap().expect("granted").release().await.unwrap();
        cleanup(&*s, &name, &[]).await;
    } else {
        expect_kind(result, ErrorKind::Unsupported, "a lease on a store without its capabilities");
    }
}

/// Four instances campaign while leaders write a shared resource with
/// fenced writes and now and then resign, handing over; the fenced resource
/// never sees an older leader's write after a newer one's. (A leader paused
/// past its TTL is the `lease` check's: a guard keeps renewing while its
/// task is busy, so a stall inside one process does not lose the lease.)
pub async fn election_fenced(factory: &impl Factory) {
    use crate::testkit::{LeaseHistory, WriteRecord, check_fencing};
    let mut stores = Vec::new();
    for _ in 0..4 {
        let Some(s) = store(factory).await else { return };
        stores.push(s);
    }
    let name = unique("election-fenced");
    let resource = format!("{{{name}}}:resource");
    let ttl = ttl_of(&*stores[0], Duration::from_millis(300));
    let start = tokio::time::Instant::now();
    let run_for = ttl * 8;
    let history = Arc::new(parking_lot::Mutex::new(LeaseHistory::default()));
    let tasks = stores.iter().enumerate().map(|(client, s)| {
        let (s, name, resource, history) = (s.clone(), name.clone(), resource.clone(), history.clone());
        tokio::spawn(async move {
            let mut election = Election::start(s.clone(), &name, ttl);
            let mut n = 0u32;
            while start.elapsed() < run_for {
                let Some(leader) = election.leader() else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                n += 1;
                let invoked = start.elapsed();
                let value = Json::from(json!({ "token": leader.token(), "client": client }));
                match leader.fenced_put(&resource, value, PutOptions::default()).await {
                    Ok(()) => history.lock().accepted.push(WriteRecord {
                        client,
                        token: leader.token(),
                        invoked,
                        completed: start.elapsed(),
                    }),
                    Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict, "fenced write: {e:?}"),
                }
                drop(leader);
                if n.is_multiple_of(11) {
                    election.resign().await;
                    election = Election::start(s.clone(), &name, ttl);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            election.resign().await;
        })
    });
    for task in futures_util::future::join_all(tasks).await {
        task.expect("campaigner");
    }
    let history = std::mem::take(&mut *history.lock());
    let mut leaders: Vec<u64> = history.accepted.iter().map(|w| w.token).collect();
    leaders.dedup();
    assert!(leaders.len() >= 2, "no hand-over happened: leaders {leaders:?}");
    let found = check_fencing(&history);
    assert!(found.is_empty(), "{}", found.join("\n"));
    cleanup(&*stores[0], &name, &[&resource]).await;
}
