//! Free loopback ports for the servers the tests start.
//!
//! Ports are taken *below* the kernel's ephemeral range
//! (`/proc/sys/net/ipv4/ip_local_port_range`, 32768 and up by default). A port
//! from `bind(:0)` is an ephemeral one: between releasing it and the server
//! binding it, any outgoing connection of the same machine (a client, a
//! replica, `redis-cli`) may be handed it as its local port, and a client
//! polling a port nobody listens on can even connect to itself. Below the
//! range neither can happen. Within one process no port is handed out twice;
//! between processes a random start makes clashes rare, and the callers retry
//! a start that fails.

use std::{
    net::{Ipv4Addr, TcpListener},
    sync::atomic::{AtomicU32, Ordering},
};

/// Ports are taken from `LOW..HIGH`; with [`free_port_with_bus`] the port
/// `+ 10_000` (Redis Cluster's bus port) must also be below the range.
const LOW: u32 = 11_000;
const HIGH: u32 = 21_000;
const BUS_OFFSET: u16 = 10_000;

/// A port of 127.0.0.1 that nobody listens on right now.
pub fn free_port() -> u16 {
    pick(false)
}

/// A free port whose Redis Cluster bus port (`port + 10000`) is free too.
pub fn free_port_with_bus() -> u16 {
    pick(true)
}

fn pick(bus: bool) -> u16 {
    if ephemeral_low() < HIGH + u32::from(BUS_OFFSET) {
        // An unusual kernel setting leaves no safe range: fall back.
        return loop {
            let port = bind_any();
            if !bus || port.checked_add(BUS_OFFSET).is_some_and(bindable) {
                break port;
            }
        };
    }
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = seed();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + start.wrapping_add(n.wrapping_mul(7)) % (HIGH - LOW)) as u16;
        if bindable(port) && (!bus || bindable(port + BUS_OFFSET)) {
            return port;
        }
    }
}

/// Differs between test processes running at once (nextest runs each test in
/// its own process).
fn seed() -> u32 {
    static SEED: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        std::process::id().wrapping_mul(7919) ^ nanos
    })
}

fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

fn bind_any() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_free_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..200).map(|_| free_port_with_bus()).collect();
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "no port handed out twice");
        for &port in &ports {
            assert!(u32::from(port) + u32::from(BUS_OFFSET) < ephemeral_low(), "{port}");
            assert!(bindable(port), "{port} is free");
        }
    }
}
