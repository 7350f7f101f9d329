//! The plugin's private key-value state (WIT `state`), as bytes or JSON.
//!
//! Writes made while handling an event are read back at once and committed
//! with the event's actions; a rejected event's writes are discarded.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__bindings::state as wit;

/// The bytes stored under `key`, if any.
pub fn get(key: &str) -> Option<Vec<u8>> {
    wit::get(key)
}

/// Stores `value` under `key`, replacing what was there.
pub fn set(key: &str, value: &[u8]) {
    wit::set(key, value);
}

/// Removes `key`; removing a missing key is not an error.
pub fn delete(key: &str) {
    wit::delete(key);
}

/// The JSON value stored under `key` as a `T`, `None` when there is none.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, StateError> {
    match wit::get(key) {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError {
                key: key.to_owned(),
                reason: e.to_string(),
            }),
    }
}

/// Stores `value` as JSON under `key`.
///
/// # Panics
/// If `value` cannot be written as JSON (a map with non-string keys).
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) {
    wit::set(key, crate::to_json(value, "a state value").as_bytes());
}

/// A state value that is not the JSON expected. With `?` it rejects the
/// event in `handle` and fails the poll in a producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateError {
    pub key: String,
    pub reason: String,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "state key {:?} does not hold the JSON expected: {}",
            self.key, self.reason
        )
    }
}

impl std::error::Error for StateError {}

#[cfg(feature = "transformer")]
impl From<StateError> for crate::HandleError {
    fn from(e: StateError) -> Self {
        crate::HandleError::Reject(e.to_string())
    }
}

impl From<StateError> for String {
    fn from(e: StateError) -> Self {
        e.to_string()
    }
}
