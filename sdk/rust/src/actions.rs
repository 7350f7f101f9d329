//! What `handle` returns: the actions of an event and the errors that
//! reject or retry it, and the event's body read as typed JSON.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Action, Document, DocumentRef, Event, HandleError, OutgoingEvent, to_json};

/// Writes `value`, as JSON, under `key` in `collection`.
///
/// # Panics
/// If `value` cannot be written as JSON (a map with non-string keys); the
/// host counts the panic as a rejection of the event.
pub fn upsert<T: Serialize + ?Sized>(collection: &str, key: &str, value: &T) -> Action {
    upsert_raw(collection, key, to_json(value, "an upserted document"))
}

/// Writes the JSON text `json` under `key` in `collection` (the host
/// rejects the event if it does not parse).
pub fn upsert_raw(collection: &str, key: &str, json: impl Into<String>) -> Action {
    Action::Upsert(Document {
        collection: collection.to_owned(),
        key: key.to_owned(),
        json: json.into(),
    })
}

/// Removes the document under `key` in `collection`.
pub fn delete(collection: &str, key: &str) -> Action {
    Action::Delete(DocumentRef {
        collection: collection.to_owned(),
        key: key.to_owned(),
    })
}

/// Publishes `body` (a value that is a JSON object) under `routing_key`
/// once the event is committed.
///
/// # Panics
/// If `body` cannot be written as JSON.
pub fn publish<T: Serialize + ?Sized>(routing_key: &str, body: &T) -> Action {
    publish_raw(routing_key, to_json(body, "a published body"))
}

/// Publishes the JSON object text `body` under `routing_key`.
pub fn publish_raw(routing_key: &str, body: impl Into<String>) -> Action {
    Action::Publish(OutgoingEvent {
        routing_key: routing_key.to_owned(),
        body: body.into(),
    })
}

/// The event is bad: dead-letter it with `reason`, never retry it.
pub fn reject(reason: impl Into<String>) -> HandleError {
    HandleError::Reject(reason.into())
}

/// Something outside the event failed: deliver it again later.
pub fn retry(reason: impl Into<String>) -> HandleError {
    HandleError::Retry(reason.into())
}

impl Event {
    /// The body parsed as `T`; a body that does not fit is rejected with
    /// serde's reason.
    pub fn body_json<T: DeserializeOwned>(&self) -> Result<T, HandleError> {
        serde_json::from_str(&self.body)
            .map_err(|e| reject(format!("the body is not the JSON expected: {e}")))
    }
}
