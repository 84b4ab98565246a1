//! The behaviour suite against NATS JetStream KV (a fresh bucket per store).

mod support_nats;

use support_nats::store;

purista_core::behaviour_suite!(store);
