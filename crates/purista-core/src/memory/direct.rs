//! The default store's most frequent calls on the concrete type, statically
//! dispatched. Through `dyn StateStore` every call's future is boxed, and on
//! this store the box (an allocation, a move and a free) costs about as much
//! as the lookup itself. Each method is the contract's own function (the
//! same key checks, config, prefix and span as the trait's); the results
//! are the same either way.

use serde::{Serialize, de::DeserializeOwned};

use super::DefaultStateStore;
use crate::{
    Json, Result, StateMap, backend,
    ext::{decode, encode},
};

impl DefaultStateStore {
    /// [`StateStore::get_value`](crate::StateStore::get_value), without the boxed future.
    pub async fn get_value(&self, name: &str) -> Result<Option<Json>> {
        backend::get_value(self, name).await
    }

    /// [`StateStore::get_state`](crate::StateStore::get_state), without the boxed future.
    pub async fn get_state(&self, names: &[&str]) -> Result<StateMap> {
        backend::get_state(self, names).await
    }

    /// [`StateStore::set_state`](crate::StateStore::set_state), without the boxed future.
    pub async fn set_state(&self, name: &str, value: Json) -> Result<()> {
        backend::put(self, name, value, None).await.map(drop)
    }

    /// [`StateStore::remove_state`](crate::StateStore::remove_state), without the boxed future.
    pub async fn remove_state(&self, name: &str) -> Result<()> {
        backend::remove(self, name, None).await
    }

    /// [`StateStoreExt::get`](crate::StateStoreExt::get), without the boxed future.
    pub async fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        self.get_value(name).await?.map(|json| decode(json, name)).transpose()
    }

    /// [`StateStoreExt::set`](crate::StateStoreExt::set), without the boxed future.
    pub async fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        self.set_state(name, encode(value, name)?).await
    }
}

#[cfg(test)]
mod tests {
    use crate::{DefaultStateStore, ErrorKind, Json, StateStore, StoreConfig};

    fn prefixed(config: StoreConfig) -> DefaultStateStore {
        DefaultStateStore::from_config(StoreConfig { key_prefix: "svc:".into(), ..config })
    }

    /// What one path writes the other reads, under the prefix.
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
