//! The contract's most frequent calls for one backend type, statically
//! dispatched. Through `dyn StateStore` every call's future is boxed (an
//! allocation, a move and a free); on the default store that costs about as
//! much as the lookup itself, on a network store about a twentieth of the
//! client's own work. These are the functions the blanket
//! `impl StateStore for B: Backend` runs (the same key checks, config,
//! prefix and span), so the results are the same either way.
//! [`direct_calls!`](crate::direct_calls) makes them methods of a backend's
//! type.

use serde::{Serialize, de::DeserializeOwned};

pub use super::blanket::{get_state, get_value};
use super::{
    Backend,
    blanket::{put, remove},
};
use crate::{
    Json, Result,
    ext::{decode, encode},
};

/// For [`direct_calls!`](crate::direct_calls)'s bounds, whatever the
/// calling crate depends on.
#[doc(hidden)]
pub use serde as __serde;

/// `set_state`: a plain upsert, any earlier TTL removed.
pub async fn set_state<B: Backend>(b: &B, name: &str, value: Json) -> Result<()> {
    put(b, name, value, None).await.map(drop)
}

/// `remove_state`: removing a missing name is not an error.
pub async fn remove_state<B: Backend>(b: &B, name: &str) -> Result<()> {
    remove(b, name, None).await
}

/// `StateStoreExt::get`: errors name the key.
pub async fn get<B: Backend, T: DeserializeOwned>(b: &B, name: &str) -> Result<Option<T>> {
    get_value(b, name).await?.map(|json| decode(json, name)).transpose()
}

/// `StateStoreExt::set`: errors name the key.
pub async fn set<B: Backend, T: Serialize + ?Sized>(b: &B, name: &str, value: &T) -> Result<()> {
    set_state(b, name, encode(value, name)?).await
}

/// Makes the contract's most frequent calls (`get_value`, `get_state`,
/// `set_state`, `remove_state`, and the typed `get` and `set`) methods of a
/// [`Backend`] type, without the boxed future of a call through
/// `dyn StateStore`. Same rules, same results: they run what the trait runs
/// (see [`backend::direct`](crate::backend::direct)).
///
/// ```
/// # use purista_core::{backend::Backend, Capabilities, ETag, Json, PutOptions, Result, StoreConfig};
/// # #[derive(Debug, Clone, Default)]
/// # struct MyStore { config: StoreConfig }
/// # impl Backend for MyStore {
/// #     fn name(&self) -> &str { "MyStore" }
/// #     fn config(&self) -> &StoreConfig { &self.config }
/// #     fn with_config(&self, config: StoreConfig) -> Self { MyStore { config } }
/// #     fn capabilities(&self) -> Capabilities { Capabilities::default() }
/// #     async fn get_state(&self, keys: &[&str]) -> Result<Vec<Option<Json>>> { Ok(vec![None; keys.len()]) }
/// #     async fn put(&self, _: &str, _: Json, _: &PutOptions) -> Result<Option<ETag>> { Ok(None) }
/// #     async fn remove(&self, _: &str, _: Option<&ETag>) -> Result<()> { Ok(()) }
/// # }
/// purista_core::direct_calls!(MyStore);
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<()> {
/// // No `StateStore` import needed, and no boxed future.
/// assert_eq!(MyStore::default().get::<u32>("missing").await?, None);
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! direct_calls {
    ($store:ty) => {
        impl $store {
            // Each returns the contract's future itself, not a state machine
            // around it (it borrows every argument, and is `Send`
            // where they are: this crate's edition captures them all).

            /// The contract's `get_value`, statically dispatched.
            pub fn get_value(
                &self,
                name: &str,
            ) -> impl ::std::future::Future<Output = $crate::Result<Option<$crate::Json>>> {
                $crate::backend::direct::get_value(self, name)
            }

            /// The contract's `get_state`, statically dispatched.
            pub fn get_state(
                &self,
                names: &[&str],
            ) -> impl ::std::future::Future<Output = $crate::Result<$crate::StateMap>> {
                $crate::backend::direct::get_state(self, names)
            }

            /// The contract's `set_state`, statically dispatched.
            pub fn set_state(
                &self,
                name: &str,
                value: $crate::Json,
            ) -> impl ::std::future::Future<Output = $crate::Result<()>> {
                $crate::backend::direct::set_state(self, name, value)
            }

            /// The contract's `remove_state`, statically dispatched.
            pub fn remove_state(
                &self,
                name: &str,
            ) -> impl ::std::future::Future<Output = $crate::Result<()>> {
                $crate::backend::direct::remove_state(self, name)
            }

            /// `StateStoreExt::get`, statically dispatched.
            pub fn get<T: $crate::backend::direct::__serde::de::DeserializeOwned>(
                &self,
                name: &str,
            ) -> impl ::std::future::Future<Output = $crate::Result<Option<T>>> {
                $crate::backend::direct::get(self, name)
            }

            /// `StateStoreExt::set`, statically dispatched.
            pub fn set<T: $crate::backend::direct::__serde::Serialize + ?Sized>(
                &self,
                name: &str,
                value: &T,
            ) -> impl ::std::future::Future<Output = $crate::Result<()>> {
                $crate::backend::direct::set(self, name, value)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::{DefaultStateStore, ErrorKind, Json, StateStore, StoreConfig};

    fn prefixed(config: StoreConfig) -> DefaultStateStore {
        DefaultStateStore::from_config(StoreConfig { key_prefix: "svc:".into(), ..config })
    }

    /// What one path writes the other reads (the default store's direct calls
    /// against the trait's), under the prefix.
    #[tokio::test]
    async fn both_paths_share_state_and_prefix() {
        let store = prefixed(StoreConfig::default());
        let contract: &dyn StateStore = &store;
        store.set("a", &1).await.unwrap();
        contract.set_state("b", Json::encode(&2).unwrap()).await.unwrap();
        assert_eq!(contract.get_value("a").await.unwrap(), Some(Json::encode(&1).unwrap()));
        assert_eq!(store.get::<i32>("b").await.unwrap(), Some(2));
        let both = store.get_state(&["a", "b", "c"]).await.unwrap();
        assert_eq!(both, contract.get_state(&["a", "b", "c"]).await.unwrap());
        assert_eq!(
            contract.list_keys("").await.unwrap(),
            ["a", "b"],
            "stored under the prefix, listed without"
        );
        store.remove_state("a").await.unwrap();
        assert_eq!(contract.get_value("a").await.unwrap(), None);
    }

    /// Through `dyn`, the default store's reads, plain writes and removes are ready
    /// before they are awaited: no boxed future. Refusals too.
    #[tokio::test]
    async fn the_default_store_answers_dyn_calls_at_once() {
        let store = prefixed(StoreConfig::default());
        let contract: &dyn StateStore = &store;
        let set = contract.set_state("a", Json::encode(&1).unwrap());
        assert_eq!(format!("{set:?}"), "Call::Ready");
        set.await.unwrap();
        let get = contract.get_value("a");
        assert_eq!(format!("{get:?}"), "Call::Ready");
        assert_eq!(get.await.unwrap(), Some(Json::encode(&1).unwrap()));
        assert_eq!(store.get::<i32>("a").await.unwrap(), Some(1), "the same entry on the direct path");
        let removed = contract.remove_state("a");
        assert_eq!(format!("{removed:?}"), "Call::Ready");
        removed.await.unwrap();
        assert_eq!(store.get::<i32>("a").await.unwrap(), None);
        let refused = contract.get_value("");
        assert_eq!(format!("{refused:?}"), "Call::Ready");
        assert_eq!(refused.await.unwrap_err().kind(), ErrorKind::InvalidKey);
    }

    /// The same checks, and the same errors, on both paths.
    #[tokio::test]
    async fn both_paths_refuse_the_same() {
        let store = prefixed(StoreConfig::default());
        let contract: &dyn StateStore = &store;
        for key in ["", &"k".repeat(crate::MAX_KEY_BYTES + 1)] {
            let direct = store.get_value(key).await.unwrap_err();
            assert_eq!(direct.kind(), ErrorKind::InvalidKey);
            assert_eq!(direct.to_string(), contract.get_value(key).await.unwrap_err().to_string());
            assert_eq!(store.set(key, &1).await.unwrap_err().kind(), ErrorKind::InvalidKey);
            assert_eq!(store.remove_state(key).await.unwrap_err().kind(), ErrorKind::InvalidKey);
            assert_eq!(store.get_state(&["k", key]).await.unwrap_err().kind(), ErrorKind::InvalidKey);
        }
        store.set("text", "not a number").await.unwrap();
        let wrong = store.get::<u32>("text").await.unwrap_err();
        assert_eq!((wrong.kind(), wrong.key()), (ErrorKind::InvalidValue, Some("text")));

        let off = prefixed(StoreConfig {
            enable_get: false,
            enable_set: false,
            enable_remove: false,
            ..Default::default()
        });
        let contract: &dyn StateStore = &off;
        assert_eq!(
            off.get_value("k").await.unwrap_err().kind(),
            contract.get_value("k").await.unwrap_err().kind()
        );
        assert_eq!(off.get_value("k").await.unwrap_err().kind(), ErrorKind::Disabled);
        assert_eq!(off.set("k", &1).await.unwrap_err().kind(), ErrorKind::Disabled);
        assert_eq!(off.remove_state("k").await.unwrap_err().kind(), ErrorKind::Disabled);
    }
}
