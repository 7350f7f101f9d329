//! Dead letters of the embedded bus, which has no dead-letter queues: the
//! failed message, why, and the plugin version it failed on, kept until
//! replayed. (With RabbitMQ they live in `<prefix>.<plugin>.dlq`.)

use super::StoreError;

/// A dead letter kept in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDeadLetter {
    pub seq: i64,
    pub plugin: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub reason: String,
    pub version: String,
    pub failed_ms: i64,
}

/// The `eventId` of a dead letter's body, by which it is found: a string
/// one, no longer than [`super::dedupe::MAX_EVENT_ID_BYTES`].
pub fn event_id_of(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("eventId")?
        .as_str()
        .filter(|id| !id.is_empty() && id.len() <= super::dedupe::MAX_EVENT_ID_BYTES)
        .map(str::to_owned)
}

/// Keeping, listing and forgetting dead letters.
pub trait DeadLetters {
    /// Keeps dead letters (`seq` is ignored and assigned), in one
    /// transaction.
    fn add_dead_letters(&self, letters: &[StoredDeadLetter]) -> Result<(), StoreError>;

    /// A plugin's oldest `limit` stored dead letters, and how many it has.
    fn dead_letters(
        &self,
        plugin: &str,
        limit: u32,
    ) -> Result<(Vec<StoredDeadLetter>, u64), StoreError>;

    /// Forgets stored dead letters (replayed).
    fn remove_dead_letters(&self, seqs: &[i64]) -> Result<(), StoreError>;
}
