//! A batch's commit: what one batch of one plugin changes across the
//! concerns (documents, state, applied ids, outbox), written in ONE
//! transaction on every backend, so that a crash leaves all of it or none.

use super::{DocumentWrite, OutboxEntry, PublishWrite, StoreError};

/// Everything one batch of one plugin changes, committed together.
#[derive(Debug, Default)]
pub struct BatchCommit {
    pub plugin: String,
    /// The sha256 of the plugin file that handled the batch.
    pub version: String,
    /// The version that file declares (`describe()`), recorded once per
    /// file with its first applied ids.
    pub declared_version: String,
    pub applied_event_ids: Vec<String>,
    pub documents: Vec<DocumentWrite>,
    /// Final value of each state key the batch touched; `None` deletes it.
    pub state: Vec<(String, Option<Vec<u8>>)>,
    /// The plugin's state generation the batch began at, when it read or
    /// wrote state: the commit moves it on by one, or fails with
    /// [`StoreError::Conflict`] (writing nothing) if another writer moved it
    /// first, since what the batch read may be stale. This is what keeps
    /// hosts sharing a store from losing each other's state updates.
    /// `None`: the batch touched no state; the generation stays.
    pub state_generation: Option<u64>,
    /// The events to publish after the commit (those with a cause are also
    /// recorded for the event's journey).
    pub publish: Vec<PublishWrite>,
}

/// Committing batches.
pub trait Batches {
    /// Commits a batch in one transaction and returns its outbox entries
    /// (with their sequence numbers), to be published and then
    /// [`super::Outbox::outbox_done`]. An applied id already recorded, or a
    /// state generation that moved since the batch began, fails the whole
    /// batch with [`StoreError::Conflict`]; nothing is written.
    fn commit_batch(&self, batch: &BatchCommit) -> Result<Vec<OutboxEntry>, StoreError>;
}
