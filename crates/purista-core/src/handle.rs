//! Handles on one connection: clones and scoped stores share an adapter's
//! connection, and `destroy` must release only the handle it is called on.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

/// One handle's share of a connection. The adapter closes the connection
/// when [`release`](Handle::release) says this was the last live handle;
/// a handle dropped without `destroy` gives up its share too.
#[derive(Debug)]
pub struct Handle {
    live: Arc<AtomicUsize>,
    released: AtomicBool,
}

impl Handle {
    /// The first handle on a new connection.
    pub fn new() -> Self {
        Handle { live: Arc::new(AtomicUsize::new(1)), released: AtomicBool::new(false) }
    }

    /// A handle that holds no share, for the adapter's own background tasks
    /// (a watcher): they must not keep the connection open for the user's
    /// handles, nor close it.
    pub fn detached() -> Self {
        Handle { live: Arc::new(AtomicUsize::new(0)), released: AtomicBool::new(true) }
    }

    /// Another handle on the same connection.
    pub fn another(&self) -> Self {
        self.live.fetch_add(1, Ordering::AcqRel);
        Handle { live: self.live.clone(), released: AtomicBool::new(false) }
    }

    /// Gives up this handle's share (once; later calls do nothing) and says
    /// whether it was the last live one, so that the connection should close.
    pub fn release(&self) -> bool {
        !self.released.swap(true, Ordering::AcqRel) && self.live.fetch_sub(1, Ordering::AcqRel) == 1
    }
}

impl Default for Handle {
    fn default() -> Self {
        Handle::new()
    }
}

impl Clone for Handle {
    fn clone(&self) -> Self {
        self.another()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_release_closes() {
        let first = Handle::new();
        let (second, third) = (first.another(), first.clone());
        assert!(!second.release());
        assert!(!second.release(), "a second destroy of one handle counts once");
        drop(third);
        assert!(first.release(), "the last live handle");
        assert!(!first.release());
        let task = Handle::detached();
        assert!(!task.release(), "a detached handle never closes anything");
    }
}
