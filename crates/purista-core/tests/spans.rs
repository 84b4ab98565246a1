//! The tracing span around every state call. Alone in its binary: tracing
//! caches per-callsite interest globally, so tests running beside it could
//! hit the callsites before the subscriber below is in place.

use std::sync::{Arc, Mutex};

use purista_core::{DefaultStateStore, Json, StateStore};
use tracing::{
    Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id},
};
use tracing_subscriber::{Layer, layer::Context as LayerContext, prelude::*, registry::Registry};

/// A span's name and its fields, as text.
type Recorded = (String, Vec<(String, String)>);

/// Records every span: its name and its `purista.*` fields.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Recorded>>>);

impl<S: Subscriber> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: LayerContext<'_, S>) {
        struct Fields(Vec<(String, String)>);
        impl Visit for Fields {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                self.0.push((field.name().to_string(), format!("{value:?}")));
            }
            fn record_str(&mut self, field: &Field, value: &str) {
                self.0.push((field.name().to_string(), value.to_string()));
            }
        }
        let mut fields = Fields(Vec::new());
        attrs.record(&mut fields);
        self.0.lock().unwrap().push((attrs.metadata().name().to_string(), fields.0));
    }
}

#[tokio::test]
async fn every_state_call_has_its_own_span() {
    let spans = Spans::default();
    let _guard = tracing::subscriber::set_default(Registry::default().with(spans.clone()));
    let store = DefaultStateStore::new();
    store.set("k", &1).await.unwrap();
    store.get::<u32>("k").await.unwrap();
    store.get_state(&["k"]).await.unwrap();
    store.remove_state("k").await.unwrap();
    // Through `dyn`, where reads and plain writes complete at once.
    let contract: &dyn StateStore = &store;
    contract.set_state("k", Json::encode(&1).unwrap()).await.unwrap();
    contract.get_value("k").await.unwrap();
    contract.remove_state("k").await.unwrap();

    let seen = spans.0.lock().unwrap().clone();
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "purista.stateStore.setValue",
            "purista.stateStore.getValue",
            "purista.stateStore.getValue",
            "purista.stateStore.removeValue",
            "purista.stateStore.setValue",
            "purista.stateStore.getValue",
            "purista.stateStore.removeValue",
        ]
    );
    for (_, fields) in &seen {
        assert!(fields.contains(&("purista.store.name".into(), "DefaultStateStore".into())), "{fields:?}");
        assert!(fields.contains(&("purista.store.type".into(), "StateStore".into())), "{fields:?}");
    }
}
