//! The emulator's semantics, case by case, through the raw generated client
//! (not the adapter).

mod conditions;
mod server;
mod state;
mod support;
mod transactions;
