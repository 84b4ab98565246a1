//! Test support for the integration suites: real Redis and NATS JetStream
//! servers for every test run ([`fixtures`]), from the environment, a
//! container, or a local binary.

pub mod fixtures;
pub mod ports;
pub mod tls;

/// The repository README: its examples compile as doc-tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
