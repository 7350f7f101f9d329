//! The outbox: events a plugin's batch publishes, committed with the batch
//! by [`super::Batches::commit_batch`] and kept until the broker confirmed
//! them (or the embedded bus routed them).

use super::StoreError;

/// An event a plugin asked to publish, kept until the broker confirmed it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub seq: i64,
    pub plugin: String,
    pub routing_key: String,
    pub body: String,
    /// How many plugins the event has passed through (see `headers::HOPS`).
    pub hops: u32,
}

/// An event a plugin's batch publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishWrite {
    pub routing_key: String,
    pub body: String,
    pub hops: u32,
    /// The event it is published because of, if any: recorded with the
    /// commit for `GET /events/{eventId}`.
    pub cause: Option<Cause>,
}

/// Why a plugin published an event: the `n`th publish of its handling of
/// `event_id`. The published event's own id is `published_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub event_id: String,
    pub n: u32,
    pub published_id: String,
}

/// Reading and clearing the outbox.
pub trait Outbox {
    /// Events of `plugin` committed but not yet confirmed by the broker,
    /// oldest first.
    fn pending_outbox(&self, plugin: &str) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Forgets outbox entries the broker has confirmed.
    fn outbox_done(&self, seqs: &[i64]) -> Result<(), StoreError>;
}
