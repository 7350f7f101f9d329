//! Plugin state: each plugin's private key-value pairs (bytes), written
//! with its batches by [`super::Batches::commit_batch`] and read from inside
//! a plugin call (the `state` import) on a cache miss, and the plugin's
//! state generation, which every commit that touched the state moves on.

use super::StoreError;

/// Reading a plugin's committed state.
pub trait PluginState {
    /// A plugin's committed state value.
    fn state_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// How many commits touched the plugin's state (0 before the first): a
    /// cache of committed values taken at one generation is good as long as
    /// the generation has not moved (see [`super::BatchCommit`]).
    fn state_generation(&self, plugin: &str) -> Result<u64, StoreError>;
}
