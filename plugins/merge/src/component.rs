//! The WebAssembly side: the `transformer` world, through the SDK, on
//! [`crate::merge`].

use switchyard_plugin::{
    Action, Event, HandleError, PluginInfo, Transformer, ViewPage, collections, state,
};

use crate::merge;

struct Merge;

impl Transformer for Merge {
    fn describe() -> PluginInfo {
        let version = if cfg!(feature = "test-variant") {
            concat!(env!("CARGO_PKG_VERSION"), "+variant")
        } else {
            env!("CARGO_PKG_VERSION")
        };
        PluginInfo::new(crate::NAME, version, crate::SUBSCRIPTIONS).with_views(crate::VIEWS)
    }

    fn handle(event: Event) -> Result<Vec<Action>, HandleError> {
        let actions = merge::handle(
            &mut HostState,
            &event.routing_key,
            &event.body,
            event.received_at_ms,
        )
        .map_err(|e| match e {
            merge::Error::Reject(reason) => switchyard_plugin::reject(reason),
            merge::Error::Retry(reason) => switchyard_plugin::retry(reason),
        })?;
        Ok(actions
            .into_iter()
            .map(|action| match action {
                merge::Action::Upsert {
                    collection,
                    key,
                    json,
                } => switchyard_plugin::upsert_raw(&collection, &key, mark_variant(json)),
                merge::Action::Delete { collection, key } => {
                    switchyard_plugin::delete(&collection, &key)
                }
            })
            .collect())
    }

    fn view(name: String, after: Option<String>, limit: u32) -> Result<ViewPage, String> {
        match name.as_str() {
            "data" => merge::data_view(&mut HostCollections, after.as_deref(), limit)
                .map(|(items, next)| ViewPage { items, next }),
            _ => Err(format!("unknown view {name}")),
        }
    }
}

switchyard_plugin::export_transformer!(Merge);

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

/// [`merge::State`] on the plugin's state.
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

/// [`merge::Collections`] on the committed documents.
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
