//! The behaviour suite against a standalone Redis (the shared fixture server).

mod support_redis;

use support_redis::store;

purista_core::behaviour_suite!(store);
