//! What the store knows of one event's journey, for `GET /events/{eventId}`:
//! which plugins applied it (when, with which file and the version it
//! declared), the events plugins published because of it, and the embedded
//! bus's dead letters of it. (RabbitMQ's dead letters are in the broker.)
//! All of it within the dedupe retention.

use super::{StoreError, StoredDeadLetter};

/// A plugin applied the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedRecord {
    pub plugin: String,
    /// The sha256 of the plugin file that applied it.
    pub sha256: String,
    /// The version that file declares, when the store knows it (recorded
    /// since schema version 4).
    pub version: Option<String>,
    pub applied_ms: i64,
}

/// An event a plugin published because of the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedRecord {
    pub plugin: String,
    /// Its place among the plugin's publishes for the event.
    pub n: u32,
    pub event_id: String,
    pub routing_key: String,
    pub committed_ms: i64,
}

/// Everything the store holds about one event id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventRecords {
    /// By plugin name.
    pub applied: Vec<AppliedRecord>,
    /// By plugin name, then `n`.
    pub published: Vec<PublishedRecord>,
    /// The embedded bus's dead letters of the event, oldest first.
    pub dead_letters: Vec<StoredDeadLetter>,
}

/// Looking up an event.
pub trait Journeys {
    /// What the store holds about `event_id`, looking for applied records
    /// among `plugins` (applied ids are keyed by plugin first) and the
    /// plugins whose versions the store recorded.
    fn event_records(&self, event_id: &str, plugins: &[String])
    -> Result<EventRecords, StoreError>;

    /// The version a plugin file (by sha256) declared, as recorded by its
    /// first commit.
    fn declared_version(&self, plugin: &str, sha256: &str) -> Result<Option<String>, StoreError>;
}
