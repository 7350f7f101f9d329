//! Queue bindings: the binding keys last declared for each plugin's queue,
//! so that keys a new version dropped are unbound from the broker.

use super::StoreError;

/// Remembering each plugin queue's binding keys.
pub trait QueueBindings {
    /// The binding keys last declared for a plugin's queue, sorted.
    fn queue_bindings(&self, plugin: &str) -> Result<Vec<String>, StoreError>;

    /// Records the binding keys a plugin's queue now has.
    fn set_queue_bindings(&self, plugin: &str, keys: &[String]) -> Result<(), StoreError>;
}
