//! The adapter through the emulator: what is specific to Dapr. The
//! behaviour suite runs in `integration-tests/tests/dapr.rs`.

mod handles;
mod instances;
mod limits;
mod rules;
mod sidecar;
mod support;
