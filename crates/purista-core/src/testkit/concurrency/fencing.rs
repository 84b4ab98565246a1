//! The check of a lease history: what grants and fenced writes the clients
//! saw, with real-time bounds, judged against what fencing promises.

use std::time::Duration;

/// A grant a client was told about (outcome known).
#[derive(Debug, Clone, PartialEq)]
pub struct GrantRecord {
    pub client: usize,
    pub token: u64,
    pub invoked: Duration,
    pub completed: Duration,
    /// Until when the client believed it held the lease: the last grant or
    /// renewal's send time plus the TTL, cut short by its release.
    pub valid_until: Duration,
}

/// A fenced write whose outcome is known.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteRecord {
    pub client: usize,
    pub token: u64,
    pub invoked: Duration,
    pub completed: Duration,
}

/// What the clients saw: grants, and the fenced writes the store accepted.
#[derive(Debug, Clone, Default)]
pub struct LeaseHistory {
    pub grants: Vec<GrantRecord>,
    pub accepted: Vec<WriteRecord>,
}

/// Everything wrong with `history`, at most one line per rule:
/// 1. tokens strictly increase: a grant that completed before another was
///    invoked has the smaller token (and no token is granted twice);
/// 2. leases never overlap: a grant's believed validity ends before any
///    later token's grant completes;
/// 3. fenced writes never go back: an accepted write that completed before
///    another accepted write was invoked has a token no larger.
pub fn check_fencing(history: &LeaseHistory) -> Vec<String> {
    let mut found = Vec::new();
    let grants = &history.grants;
    let mut tokens: Vec<u64> = grants.iter().map(|g| g.token).collect();
    tokens.sort_unstable();
    if let Some(w) = tokens.windows(2).find(|w| w[0] == w[1]) {
        found.push(format!("token {} was granted twice", w[0]));
    }
    if let Some((a, b)) = pairs(grants, |a, b| a.completed < b.invoked && a.token >= b.token) {
        found.push(format!("tokens went back: {a:?} completed before {b:?} began"));
    }
    if let Some((a, b)) = pairs(grants, |a, b| a.token < b.token && a.valid_until > b.completed) {
        found.push(format!("two holders at once: {a:?} still valid when {b:?} was granted"));
    }
    let writes = &history.accepted;
    if let Some((a, b)) = pairs(writes, |a, b| a.completed < b.invoked && a.token > b.token) {
        found.push(format!("a stale holder's fenced write was accepted: {b:?} after {a:?}"));
    }
    found
}

/// The first ordered pair of distinct items that `bad` holds for (the
/// histories are a few thousand records: quadratic is fine).
fn pairs<T>(items: &[T], bad: impl Fn(&T, &T) -> bool) -> Option<(&T, &T)> {
    items
        .iter()
        .enumerate()
        .find_map(|(i, a)| items.iter().enumerate().find(|&(j, b)| i != j && bad(a, b)).map(|(_, b)| (a, b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn grant(client: usize, token: u64, invoked: u64, completed: u64, valid_until: u64) -> GrantRecord {
        GrantRecord {
            client,
            token,
            invoked: ms(invoked),
            completed: ms(completed),
            valid_until: ms(valid_until),
        }
    }

    fn write(client: usize, token: u64, invoked: u64, completed: u64) -> WriteRecord {
        WriteRecord { client, token, invoked: ms(invoked), completed: ms(completed) }
    }

    #[test]
    fn a_correct_history_passes() {
        let history = LeaseHistory {
            grants: vec![grant(0, 1, 0, 2, 100), grant(1, 2, 50, 101, 200), grant(0, 3, 150, 201, 300)],
            // Client 0 paused past its lease: its write of token 1 at 120 was refused.
            accepted: vec![write(0, 1, 3, 5), write(1, 2, 102, 104), write(0, 3, 202, 203)],
        };
        assert_eq!(check_fencing(&history), Vec::<String>::new());
    }

    #[test]
    fn each_rule_catches_its_violation() {
        let twice = LeaseHistory {
            grants: vec![grant(0, 1, 0, 2, 50), grant(1, 1, 60, 62, 90)],
            ..Default::default()
        };
        assert!(check_fencing(&twice)[0].contains("granted twice"));

        let back = LeaseHistory {
            grants: vec![grant(0, 2, 0, 2, 50), grant(1, 1, 60, 62, 90)],
            ..Default::default()
        };
        assert!(check_fencing(&back)[0].contains("tokens went back"));

        let overlap = LeaseHistory {
            grants: vec![grant(0, 1, 0, 2, 100), grant(1, 2, 50, 60, 150)],
            ..Default::default()
        };
        assert!(check_fencing(&overlap)[0].contains("two holders at once"));

        let stale = LeaseHistory {
            accepted: vec![write(1, 2, 100, 102), write(0, 1, 120, 121)],
            ..Default::default()
        };
        assert!(check_fencing(&stale)[0].contains("stale holder"));
    }

    #[test]
    fn concurrent_writes_may_land_in_either_order() {
        // Overlapping in time: no order between them is implied.
        let history =
            LeaseHistory { accepted: vec![write(0, 2, 10, 20), write(1, 1, 15, 25)], ..Default::default() };
        assert!(check_fencing(&history).is_empty());
    }
}
