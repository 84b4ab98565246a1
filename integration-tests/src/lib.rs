//! Test support for the integration suites: real Redis and NATS JetStream
//! servers for every test run ([`fixtures`]), from the environment, a
//! container, or a local binary.

pub mod fixtures;
pub mod ports;
pub mod tls;
