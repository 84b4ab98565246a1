//! Redis Cluster answers that mean "not run here, send it again": `MOVED`,
//! `ASK` and `TRYAGAIN`, while a slot moves between masters. The store sends
//! such a command again itself, instead of fred.
//!
//! fred (10.1) re-writes a redirected command through the same path as a
//! command it resends after a broken connection, which spends one of
//! `max_command_attempts`. The store allows one attempt (no blind resend of
//! a write that may have applied), so fred would fail every redirected
//! command ("Too many failed write attempts"). The builder therefore sets
//! `max_redirections = 0`: on `MOVED` fred still refreshes its slot map,
//! then fails the command with "Too many redirections." (on `ASK` at once),
//! words it uses for a redirect only. A redirected command did not run, so
//! it is sent again here, after a short, growing pause (an `ASK` window
//! lasts until the slot's keys have moved and the slot is reassigned), for
//! at most the command timeout. A failure that may follow a write (a broken
//! connection, a timeout) is never sent again.

use std::{future::Future, time::Duration};

use tokio::time::Instant;

use fred::error::{Error as FredError, ErrorKind as FredKind};

/// fred's error for a command redirected more than `max_redirections` times.
const REDIRECTED: &str = "Too many redirections.";
/// The first pause before sending again; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(1);
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// Runs `call`, and again while it fails with an answer meaning that the
/// command did not run because its slot moves or moved, until `budget` has
/// passed since the first such answer (then that answer is the error).
pub(crate) async fn resend<T, F, Fut>(budget: Duration, mut call: F) -> Result<T, FredError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, FredError>>,
{
    let mut deadline = None;
    let mut pause = FIRST_PAUSE;
    loop {
        match call().await {
            Err(e) if not_run(&e) => {
                let now = Instant::now();
                let deadline = *deadline.get_or_insert(now + budget);
                if now >= deadline {
                    return Err(e);
                }
                tokio::time::sleep(pause.min(deadline - now)).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            other => return other,
        }
    }
}

/// Whether Redis refused `err`'s command before running it because of a
/// slot migration: a redirect (as fred reports it with `max_redirections =
/// 0`, or raw), or `TRYAGAIN` (a multi-key command whose keys the move has
/// split). A script's error never starts with these words.
pub(crate) fn not_run(err: &FredError) -> bool {
    (*err.kind() == FredKind::Routing && err.details() == REDIRECTED)
        || err.is_moved()
        || err.is_ask()
        || err.details().starts_with("TRYAGAIN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_answers_of_commands_not_run() {
        assert!(not_run(&FredError::new(FredKind::Routing, REDIRECTED)));
        assert!(not_run(&FredError::new(FredKind::Cluster, "MOVED 3999 127.0.0.1:6381")));
        assert!(not_run(&FredError::new(FredKind::Cluster, "ASK 3999 127.0.0.1:6381")));
        let tryagain = "TRYAGAIN Multiple keys request during rehashing of slot";
        assert!(not_run(&FredError::new(FredKind::Unknown, tryagain)));
        // A write that may have applied.
        assert!(!not_run(&FredError::new(FredKind::Unknown, "Too many failed write attempts.")));
        assert!(!not_run(&FredError::new(FredKind::IO, "Connection closed")));
        assert!(!not_run(&FredError::new(FredKind::Timeout, "Request timed out.")));
        assert!(!not_run(&FredError::new(FredKind::Cluster, "CLUSTERDOWN The cluster is down")));
    }

    #[tokio::test]
    async fn sends_again_within_the_budget_only() {
        let budget = Duration::from_millis(50);
        let mut calls = 0;
        let done = resend(budget, || {
            calls += 1;
            let n = calls;
            async move { if n < 4 { Err(FredError::new(FredKind::Routing, REDIRECTED)) } else { Ok(n) } }
        })
        .await;
        assert_eq!(done.unwrap(), 4);
        let mut calls = 0;
        let start = tokio::time::Instant::now();
        let failed: Result<(), _> = resend(budget, || {
            calls += 1;
            async { Err(FredError::new(FredKind::Routing, REDIRECTED)) }
        })
        .await;
        assert!(not_run(&failed.unwrap_err()));
        assert!(start.elapsed() >= budget && calls > 5, "{calls} calls");
        let mut calls = 0;
        let failed: Result<(), _> = resend(budget, || {
            calls += 1;
            async { Err(FredError::new(FredKind::IO, "Connection closed")) }
        })
        .await;
        assert_eq!((failed.unwrap_err().kind(), calls), (&FredKind::IO, 1), "never a blind resend");
    }
}
