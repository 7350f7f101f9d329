//! Plugin state: each plugin's private key-value pairs (bytes), written
//! with its batches by [`super::Batches::commit_batch`] and read from inside
//! a plugin call (the `state` import) on a cache miss.

use super::StoreError;

/// Reading a plugin's committed state.
pub trait PluginState {
    /// A plugin's committed state value.
    fn state_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
}
