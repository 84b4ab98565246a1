//! The suite as a test binary of its own (`harness = false`): one test per
//! case, and a case the store's capabilities exclude is reported as
//! ignored, with the reason, never as passed.

use std::{process::ExitCode, sync::Arc};

pub use libtest_mimic::Trial;
use libtest_mimic::{Arguments, Failed};

use super::{Factory, cases};
use crate::StoreConfig;

/// Runs every case against `factory` as its own test, and returns the exit
/// code of the run. What `behaviour_suite!` expands to; call it from a
/// `main` of your own to start a server (a cluster ...) first.
pub fn main<F: Factory + Send + 'static>(factory: F) -> ExitCode {
    main_with(factory, &[], Vec::new())
}

/// Like [`main`], with only the cases of `groups` (the files they live in:
/// `"cache"`, `"watch"` ...; empty: every case), and `extra` tests of the
/// binary's own beside them: for a topology that needs checks of its own.
pub fn main_with<F: Factory + Send + 'static>(factory: F, groups: &[&str], extra: Vec<Trial>) -> ExitCode {
    let args = Arguments::from_args();
    let factory = Arc::new(factory);
    // One store, to learn what it claims; the fixture says loudly why it has none.
    let probe = runtime().block_on(async {
        let store = factory.store(StoreConfig::default()).await?;
        Some((store.name().to_owned(), store.capabilities()))
    });
    let mut trials: Vec<Trial> = cases::table::<F>()
        .into_iter()
        .filter(|case| groups.is_empty() || groups.contains(&case.group))
        .map(|case| {
            let skip = match &probe {
                None => Some("no server for this store (see the message above)".to_owned()),
                Some((name, caps)) => {
                    case.needs.iter().find_map(|need| need.unmet(caps)).map(|why| format!("{name} {why}"))
                }
            };
            if let Some(why) = &skip {
                eprintln!("[purista-testkit] SKIPPED {}: {why}", case.name);
            }
            let ignored = skip.is_some();
            let factory = factory.clone();
            let trial = Trial::test(case.name, move || match skip {
                Some(why) => Err(Failed::from(format!("cannot run: {why}"))),
                None => {
                    runtime().block_on((case.run)(&factory));
                    Ok(())
                }
            });
            trial.with_kind(case.group).with_ignored_flag(ignored)
        })
        .collect();
    assert!(!trials.is_empty(), "no case in the groups {groups:?}");
    trials.extend(extra);
    libtest_mimic::run(&args, trials).exit_code()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("cannot build a Tokio runtime for the suite")
}
