//! The emulated state components: items with versions and expiry, and
//! all-or-nothing application of checked changes.

use std::{collections::HashMap, time::SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use tonic::Status;

use super::rules::{Change, Fail};
use crate::TTL_EXPIRE_TIME_KEY;

/// Every store, and the version counter ETags come from.
#[derive(Debug)]
pub(crate) struct State {
    stores: HashMap<String, Store>,
    version: u64,
}

#[derive(Debug, Default)]
pub(super) struct Store {
    items: HashMap<String, Item>,
}

#[derive(Debug, Clone)]
pub(super) struct Item {
    pub(super) value: Vec<u8>,
    pub(super) version: u64,
    expires: Option<SystemTime>,
}

impl Item {
    fn live(&self, now: SystemTime) -> bool {
        self.expires.is_none_or(|t| t > now)
    }

    /// What reads report beside the value: `ttlExpireTime` (RFC 3339, UTC,
    /// whole seconds) if it expires.
    pub(super) fn metadata(&self) -> HashMap<String, String> {
        self.expires
            .map(|t| {
                let t = DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Secs, true);
                HashMap::from([(TTL_EXPIRE_TIME_KEY.to_string(), t)])
            })
            .unwrap_or_default()
    }
}

impl State {
    /// The named stores, empty.
    pub(crate) fn new<I: IntoIterator<Item = String>>(names: I) -> Self {
        State { stores: names.into_iter().map(|name| (name, Store::default())).collect(), version: 0 }
    }

    pub(crate) fn stored_keys(&self, store: &str) -> Vec<String> {
        let now = SystemTime::now();
        let mut keys: Vec<String> = self
            .stores
            .get(store)
            .map(|s| s.items.iter().filter(|(_, i)| i.live(now)).map(|(k, _)| k.clone()).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        keys
    }

    /// The store `name`, or the sidecar's answer for a store it does not have.
    pub(super) fn store(&mut self, name: &str) -> Result<&mut Store, Status> {
        find(&mut self.stores, name)
    }

    /// Applies `changes` to the store `name` ([`Store::apply`]), a failure
    /// answered as `answer` says.
    pub(super) fn apply(
        &mut self,
        name: &str,
        changes: Vec<Change>,
        answer: impl FnOnce(Fail) -> Status,
    ) -> Result<(), Status> {
        let State { stores, version } = self;
        find(stores, name)?.apply(changes, version).map_err(answer)
    }
}

fn find<'a>(stores: &'a mut HashMap<String, Store>, name: &str) -> Result<&'a mut Store, Status> {
    if stores.is_empty() {
        return Err(Status::failed_precondition("state store is not configured"));
    }
    stores.get_mut(name).ok_or_else(|| Status::invalid_argument(format!("state store {name} is not found")))
}

impl Store {
    /// The item under `key` (as stored), unless missing or expired.
    pub(super) fn live(&self, key: &str, now: SystemTime) -> Option<&Item> {
        self.items.get(key).filter(|i| i.live(now))
    }

    /// Checks every change, in order, against the state the earlier ones
    /// leave behind (`overlay`: the version each key has after them, `None`
    /// once deleted); then applies them all, each write taking the next
    /// version. Nothing is applied on failure.
    fn apply(&mut self, changes: Vec<Change>, version: &mut u64) -> Result<(), Fail> {
        let now = SystemTime::now();
        let mut overlay: HashMap<&str, Option<u64>> = HashMap::new();
        let mut next = *version;
        for change in &changes {
            let current = match overlay.get(change.key.as_str()) {
                Some(v) => *v,
                None => self.live(&change.key, now).map(|i| i.version),
            };
            change.check(current)?;
            let after = change.write.as_ref().map(|_| {
                next += 1;
                next
            });
            overlay.insert(&change.key, after);
        }
        drop(overlay);
        self.items.retain(|_, i| i.live(now));
        for change in changes {
            match change.write {
                Some((value, ttl)) => {
                    *version += 1;
                    let item = Item { value, version: *version, expires: ttl.map(|t| now + t) };
                    self.items.insert(change.key, item);
                }
                None => {
                    self.items.remove(&change.key);
                }
            }
        }
        Ok(())
    }
}
