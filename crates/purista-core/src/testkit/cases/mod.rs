//! The cases, one file per capability, and the one table that registers
//! each with the capabilities it needs (what the runner skips it without).

mod basic;
mod cache;
mod capabilities;
mod config;
mod counters;
mod etag;
mod instances;
mod keys;
mod lease;
mod list;
mod rate_limit;
mod support;
mod transactions;
mod ttl;
mod watch;

use std::{future::Future, pin::Pin};

pub use self::{
    basic::*, cache::*, capabilities::*, config::*, counters::*, etag::*, instances::*, keys::*, lease::*,
    list::*, rate_limit::*, transactions::*, ttl::*, watch::*,
};
use super::{Factory, concurrency};
use crate::{Capabilities, Capability};

/// A case's future (not `Send`: the runner drives it with `block_on`).
pub(crate) type CaseFuture<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// One registered case.
pub(crate) struct Case<F> {
    pub name: &'static str,
    /// The file it lives in: basic, etag, ttl ...
    pub group: &'static str,
    /// What the store must claim for the case to run; otherwise it is skipped.
    pub needs: &'static [Need],
    pub run: for<'a> fn(&'a F) -> CaseFuture<'a>,
}

/// What a case needs of a store: a capability, or a declared limit.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Need {
    Has(Capability),
    /// A declared `max_transaction_ops`.
    TransactionLimit,
    /// Every read sees every acknowledged write, another instance's too
    /// (no declared `stale_reads`).
    FreshReads,
    /// Declared bounded staleness (a near cache): what its own cases check.
    StaleReads,
}

impl Need {
    /// Why a store with `caps` cannot run the case, if it cannot.
    pub(crate) fn unmet(self, caps: &Capabilities) -> Option<String> {
        match self {
            Need::Has(cap) => (!caps.has(cap)).then(|| format!("does not support {cap}")),
            Need::TransactionLimit => {
                caps.max_transaction_ops.is_none().then(|| "declares no transaction limit".into())
            }
            Need::FreshReads => {
                caps.stale_reads.is_some().then(|| "serves reads that may be stale (near cache)".into())
            }
            Need::StaleReads => {
                caps.stale_reads.is_none().then(|| "serves every read fresh (no near cache)".into())
            }
        }
    }
}

macro_rules! need {
    (TransactionLimit) => {
        Need::TransactionLimit
    };
    (FreshReads) => {
        Need::FreshReads
    };
    (StaleReads) => {
        Need::StaleReads
    };
    ($cap:ident) => {
        Need::Has(Capability::$cap)
    };
}

macro_rules! table {
    ($($group:ident { $($case:ident [$($cap:ident),*]),+ $(,)? })+) => {
        /// Every case, in one place.
        pub(crate) fn table<F: Factory>() -> Vec<Case<F>> {
            vec![$($(Case {
                name: stringify!($case),
                group: stringify!($group),
                needs: &[$(need!($cap)),*],
                run: |f| Box::pin($group::$case(f)),
            },)+)+]
        }
    };
}

table! {
    basic {
        round_trip [], null_is_a_value [], decode_mismatch_names_the_key [], remove [],
        missing_names_are_none [], get_state_many [], large_value [],
    }
    cache {
        cache_own_writes_at_once [StaleReads], cache_foreign_writes_within_bound [StaleReads],
        cache_entry_and_cas_never_stale [StaleReads, Etag], cache_ttl_honoured [StaleReads, Ttl],
        cache_writers_converge [StaleReads],
    }
    capabilities { unclaimed_capabilities_are_unsupported [] }
    config { disabled_get [], disabled_set [], disabled_remove [], key_prefix [FreshReads], scoped_store [] }
    keys { key_edge_cases [], key_limits [] }
    etag {
        etag [Etag], empty_etag_is_a_conflict [Etag], bulk_writes_are_per_key [Etag],
        first_write [CreateOnly], concurrent_counter [Etag, CreateOnly],
    }
    transactions {
        transactions [Transactions], transaction_order [Transactions],
        transaction_all_or_nothing [Transactions, Etag],
        transaction_steps_see_earlier_steps [Transactions, Etag],
        transaction_limit [Transactions, TransactionLimit],
    }
    ttl {
        ttl_rejects_bad_values [Ttl], ttl_expires [Ttl], ttl_metadata [Ttl, Etag],
        ttl_removed_by_plain_set [Ttl],
    }
    counters {
        counter_basics [Counters], counter_concurrent [Counters], counter_ttl [Counters, Ttl, Etag],
        counter_tasks_of_one_instance [Counters], counter_refusals_per_increment [Counters],
        counter_cancelled_callers [Counters],
    }
    list { list_keys_by_prefix [List] }
    watch {
        watch_prefix [Watch], watch_burst_transaction [Watch, Transactions], watch_concurrent_writers [Watch],
        watch_foreign_writers [Watch], watch_expiry [Watch, Ttl], watch_counters [Watch, Counters],
        invalidations_converge [Watch],
    }
    rate_limit {
        rate_limit_fixed_burst [Counters, Ttl], rate_limit_fixed_window_resets [Counters, Ttl],
        rate_limit_fixed_window_holds_under_hammering [Counters, Ttl],
        rate_limit_sliding_burst [Counters, Ttl], rate_limit_sliding_smooths_boundary [Counters, Ttl],
        rate_limit_rejects_bad_arguments [],
    }
    instances {
        instances_share_state [FreshReads], many_instances_connect_at_once [],
        service_destroy_keeps_shared_store [], destroy_keeps_other_handles [],
    }
    lease {
        lease_needs_capabilities [],
        lease_basics [Etag, CreateOnly, Ttl, Transactions], lease_expiry [Etag, CreateOnly, Ttl, Transactions],
        lease_stored_format [Etag, CreateOnly, Ttl, Transactions],
        lock_guard_renews_and_reports_loss [Etag, CreateOnly, Ttl, Transactions],
        election_hands_over [Etag, CreateOnly, Ttl, Transactions],
        election_fenced [Etag, CreateOnly, Ttl, Transactions],
    }
    concurrency {
        linearizable [Etag, CreateOnly], bank [Etag, Transactions], counter [Counters],
        lease [Etag, CreateOnly, Ttl, Transactions], rate_limit [Counters, Ttl],
    }
}
