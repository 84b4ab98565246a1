//! Bytes per stored entry at 1M small entries: the default store against a
//! plain `HashMap<String, Bytes>`, counted by a global allocator that tracks
//! live heap bytes (so the figure is exact, not a sampled RSS).
//!
//! `cargo bench -p purista-core --bench memory`

// A counting global allocator cannot be written without `unsafe`; it only
// delegates to the system allocator. Bench code, not library code.
#![allow(unsafe_code)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    collections::HashMap,
    sync::atomic::{AtomicUsize, Ordering},
};

use bytes::Bytes;
use purista_core::{DefaultStateStore, Json};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const ENTRIES: usize = 1_000_000;

fn key(i: usize) -> String {
    format!("session:{i:08}")
}

fn value(i: usize) -> Vec<u8> {
    format!("{{\"n\":{i}}}").into_bytes()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this quickly.
    let entries = if std::env::args().any(|a| a == "--bench") { ENTRIES } else { 10_000 };
    let payload: usize = (0..entries).map(|i| key(i).len() + value(i).len()).sum();

    let before = LIVE.load(Ordering::Relaxed);
    let mut map = HashMap::new();
    for i in 0..entries {
        map.insert(key(i), Bytes::from(value(i)));
    }
    let map_bytes = LIVE.load(Ordering::Relaxed) - before;
    drop(map);

    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let store = DefaultStateStore::new();
    let before = LIVE.load(Ordering::Relaxed);
    rt.block_on(async {
        for i in 0..entries {
            store.set_state(&key(i), Json::from_stored(value(i))).await.unwrap();
        }
    });
    let store_bytes = LIVE.load(Ordering::Relaxed) - before;

    let per = |total: usize| total as f64 / entries as f64;
    println!("memory/{entries} entries (key + JSON = {:.1} bytes each on average)", per(payload));
    println!("  HashMap<String, Bytes>: {:>6.1} bytes/entry", per(map_bytes));
    println!("  DefaultStateStore:      {:>6.1} bytes/entry", per(store_bytes));
    println!("  ratio store/map:        {:>6.2}", store_bytes as f64 / map_bytes as f64);
}
