//! Reads of the committed documents of the analytics store (WIT
//! `collections`, transformers only). They see what earlier batches
//! committed, not the batch in progress: keep what you read back in state.

use serde::de::DeserializeOwned;

use crate::__bindings::transformer::switchyard::plugin::collections as wit;
use crate::Entry;

/// The document under `key` in `collection`, as JSON text.
pub fn get(collection: &str, key: &str) -> Option<String> {
    wit::get(collection, key)
}

/// The document under `key` in `collection` as a `T`; an error names the
/// document that does not fit.
pub fn get_json<T: DeserializeOwned>(collection: &str, key: &str) -> Result<Option<T>, String> {
    match wit::get(collection, key) {
        None => Ok(None),
        Some(json) => serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| format!("document {collection}/{key} is not the JSON expected: {e}")),
    }
}

/// Up to `limit` documents of `collection` whose keys sort after `after`
/// (from the first when `None`), in key order.
pub fn scan(collection: &str, after: Option<&str>, limit: u32) -> Vec<Entry> {
    wit::scan(collection, after, limit)
}
