//! Properties of the key mapping: it round-trips, yields keys NATS takes,
//! preserves prefixes, and leaves keys NATS already takes alone.

use proptest::prelude::*;
use purista_nats_state_store::key::{decode, encode, encode_prefix, filter_tokens, is_valid_nats_key};

/// Keys with plenty of the characters that need care.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z.:=*> _\\-/]{1,24}",
        "[a-zA-Z0-9.]{1,24}",
        any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
        "[.]{1,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn round_trips(k in key()) {
        let nats = encode(&k);
        prop_assert!(is_valid_nats_key(&nats), "{k:?} -> {nats:?}");
        prop_assert_eq!(decode(&nats), Some(k));
    }

    #[test]
    fn preserves_prefixes(a in key(), b in key()) {
        let whole = format!("{a}{b}");
        // The prefix form of `a` starts every key that starts with `a` ...
        prop_assert!(encode(&whole).starts_with(&encode_prefix(&a)), "{a:?} + {b:?}");
        prop_assert!(encode(&a).starts_with(&encode_prefix(&a)));
        // ... and is `encode(a)` itself unless `a` ends with a kept `.`.
        if !a.ends_with('.') {
            prop_assert!(encode(&whole).starts_with(&encode(&a)), "{a:?} + {b:?}");
        }
        // The subject filter of the prefix matches the whole key's subject.
        let filter = filter_tokens(&encode_prefix(&a));
        let head = filter.trim_end_matches('>');
        prop_assert!(encode(&whole).starts_with(head), "{filter:?} vs {:?}", encode(&whole));
    }

    #[test]
    fn keeps_what_nats_takes(k in "[-/_a-zA-Z0-9]{1,8}(\\.[-/_a-zA-Z0-9]{1,8}){0,4}") {
        prop_assert_eq!(encode(&k), k);
    }

    #[test]
    fn distinct_keys_stay_distinct(a in key(), b in key()) {
        prop_assume!(a != b);
        prop_assert_ne!(encode(&a), encode(&b));
    }
}
