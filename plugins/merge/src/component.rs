//! The WebAssembly side: the only `generate!` call, and glue that maps the
//! `transformer` world's types and imports onto [`crate::merge`].

use crate::merge;

wit_bindgen::generate!({
    path: "../../wit",
    world: "transformer",
});

use switchyard::plugin::types::{Document, DocumentRef};
use switchyard::plugin::{collections, state};

struct Merge;

impl Guest for Merge {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: crate::NAME.to_owned(),
            version: if cfg!(feature = "test-variant") {
                concat!(env!("CARGO_PKG_VERSION"), "+variant").to_owned()
            } else {
                env!("CARGO_PKG_VERSION").to_owned()
            },
            subscriptions: crate::SUBSCRIPTIONS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            views: crate::VIEWS.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn handle(event: Event) -> Result<Vec<Action>, HandleError> {
        merge::handle(
            &mut HostState,
            &event.routing_key,
            &event.body,
            event.received_at_ms,
        )
        .map(|actions| actions.into_iter().map(to_wit).collect())
        .map_err(|e| match e {
            merge::Error::Reject(reason) => HandleError::Reject(reason),
            merge::Error::Retry(reason) => HandleError::Retry(reason),
        })
    }

    fn view(name: String, after: Option<String>, limit: u32) -> Result<ViewPage, String> {
        match name.as_str() {
            "data" => merge::data_view(&mut HostCollections, after.as_deref(), limit)
                .map(|(items, next)| ViewPage { items, next }),
            _ => Err(format!("unknown view {name}")),
        }
    }
}

fn to_wit(action: merge::Action) -> Action {
    match action {
        merge::Action::Upsert {
            collection,
            key,
            json,
        } => Action::Upsert(Document {
            collection,
            key,
            json: mark_variant(json),
        }),
        merge::Action::Delete { collection, key } => {
            Action::Delete(DocumentRef { collection, key })
        }
    }
}

/// The `test-variant` build marks what it writes, so that tests can tell
/// which build produced a document; the shipped build writes `json` as is.
fn mark_variant(json: String) -> String {
    match json.strip_suffix('}') {
        Some(open) if cfg!(feature = "test-variant") => {
            let comma = if open.trim_end().ends_with('{') {
                ""
            } else {
                ","
            };
            format!("{open}{comma}\"build\":\"variant\"}}")
        }
        _ => json,
    }
}

/// [`merge::State`] on the host's `state` import.
struct HostState;

impl merge::State for HostState {
    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        state::get(key)
    }

    fn set(&mut self, key: &str, value: &[u8]) {
        state::set(key, value);
    }

    fn delete(&mut self, key: &str) {
        state::delete(key);
    }
}

/// [`merge::Collections`] on the host's `collections` import.
struct HostCollections;

impl merge::Collections for HostCollections {
    fn get(&mut self, collection: &str, key: &str) -> Option<String> {
        collections::get(collection, key)
    }

    fn scan(&mut self, collection: &str, after: Option<&str>, limit: u32) -> Vec<(String, String)> {
        collections::scan(collection, after, limit)
            .into_iter()
            .map(|entry| (entry.key, entry.json))
            .collect()
    }
}

export!(Merge);
