//! The base config every store shares, enforced once for all of them.

/// PURISTA's message when reads are disabled.
pub const GET_DISABLED: &str = "get state from store is disabled by config";
/// PURISTA's message when writes are disabled.
pub const SET_DISABLED: &str = "set state at store is disabled by config";
/// PURISTA's message when removes are disabled.
pub const REMOVE_DISABLED: &str = "remove state from store is disabled by config";

/// Switches and key prefix common to every store (PURISTA's `StoreBaseConfig`).
///
/// All operations are enabled by default, as in PURISTA. A disabled operation
/// fails with [`ErrorKind::Disabled`](crate::ErrorKind::Disabled) (status 401)
/// and PURISTA's exact message.
///
/// ```
/// use purista_core::StoreConfig;
/// let config = StoreConfig::default().key_prefix("billing:").enable_remove(false);
/// assert!(config.enable_get && !config.enable_remove);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Allow reads (`get_state`, `get_entry`, `list_keys`, `watch`).
    pub enable_get: bool,
    /// Allow writes (`set_state`, `put`, transaction writes).
    pub enable_set: bool,
    /// Allow removes (`remove_state`, `remove`, transaction removes).
    pub enable_remove: bool,
    /// Put before every key on the way in, stripped on the way out.
    pub key_prefix: String,
    /// Send concurrent increments of one key from this instance to the
    /// server as one, by their sum ([`Combiner`](crate::backend::Combiner);
    /// on by default). Off, every increment is a server write of its own,
    /// and a watcher sees each; the answers are the same either way.
    pub combine_increments: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            enable_get: true,
            enable_set: true,
            enable_remove: true,
            key_prefix: String::new(),
            combine_increments: true,
        }
    }
}

impl StoreConfig {
    /// Sets [`enable_get`](Self::enable_get).
    pub fn enable_get(mut self, on: bool) -> Self {
        self.enable_get = on;
        self
    }
    /// Sets [`enable_set`](Self::enable_set).
    pub fn enable_set(mut self, on: bool) -> Self {
        self.enable_set = on;
        self
    }
    /// Sets [`enable_remove`](Self::enable_remove).
    pub fn enable_remove(mut self, on: bool) -> Self {
        self.enable_remove = on;
        self
    }
    /// Sets [`key_prefix`](Self::key_prefix).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }
    /// Sets [`combine_increments`](Self::combine_increments).
    pub fn combine_increments(mut self, on: bool) -> Self {
        self.combine_increments = on;
        self
    }
}
