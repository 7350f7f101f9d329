//! Deduplication: the ids of the events each plugin applied (with the
//! plugin version, the sha256 of its file, that applied them), recorded by
//! [`super::Batches::commit_batch`] with the batch's effects, and the API's
//! Idempotency-Keys with the body each first came with. Both are kept for
//! the dedupe retention, then pruned.

use std::time::Duration;

use super::StoreError;

/// Applied event ids and idempotency keys.
pub trait Dedupe {
    /// Which of `ids` the plugin has already applied.
    fn applied_among(
        &self,
        plugin: &str,
        ids: &[&str],
    ) -> Result<std::collections::HashSet<String>, StoreError>;

    /// The version (plugin sha256) that applied an event, if it was applied.
    fn applied_by(&self, plugin: &str, event_id: &str) -> Result<Option<String>, StoreError>;

    /// How many events a plugin has applied (within the retention window).
    fn applied_count(&self, plugin: &str) -> Result<u64, StoreError>;

    /// How many events each version (plugin sha256) of a plugin applied,
    /// within the retention window, most first.
    fn applied_by_version(&self, plugin: &str) -> Result<Vec<(String, u64)>, StoreError>;

    /// Binds an API Idempotency-Key to the body it first came with. True if
    /// the key is new or came with this body before; false if it came with
    /// another body.
    fn bind_idempotency_key(&self, key: &str, body_sha256: &str) -> Result<bool, StoreError>;

    /// Frees an Idempotency-Key whose request changed nothing.
    fn unbind_idempotency_key(&self, key: &str) -> Result<(), StoreError>;

    /// Forgets applied event ids, the events published because of events,
    /// and the bodies of Idempotency-Keys, older than `retention`; returns
    /// how many applied event ids.
    fn prune_applied(&self, retention: Duration) -> Result<usize, StoreError>;
}

/// The longest event id (in bytes) the store records: PostgreSQL cannot
/// index keys much longer than 2.7 kB, and an id is part of several keys.
/// Longer ids are refused before they reach the store.
pub const MAX_EVENT_ID_BYTES: usize = 1024;

/// The time (ms since the epoch) before which dedupe records are pruned.
pub(crate) fn cutoff_ms(retention: Duration) -> i64 {
    super::now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX))
}
