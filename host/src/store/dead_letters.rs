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

/// The `eventId` of a message body, when it has a string one.
pub fn event_id_of(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("eventId")?
        .as_str()
        .map(str::to_owned)
}

/// The `eventId` a stored dead letter is found by: [`event_id_of`] its
/// body, when not empty and no longer than
/// [`super::dedupe::MAX_EVENT_ID_BYTES`].
pub fn indexed_event_id(body: &[u8]) -> Option<String> {
    event_id_of(body).filter(|id| !id.is_empty() && id.len() <= super::dedupe::MAX_EVENT_ID_BYTES)
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
