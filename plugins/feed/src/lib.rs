//! Record feeds, the logic of Switchyard's producer plugins: walk the
//! records an upstream REST system lists (one answer or many pages), and
//! emit one event per record that is new or changed since the last poll,
//! nothing for the rest.
//!
//! Map of the crate:
//! - [`listing`]: an answer read as a stream of records (an array, or an
//!   object holding one and a next-page cursor);
//! - [`paging`]: the pages of a walk (page numbers, offsets, cursors, `Link`
//!   headers) from the plugin's settings;
//! - [`walk`]: one poll's pass over the records: what changed, the event of
//!   each change, repeated ids and unreadable records;
//! - [`seen`]: what is remembered of a record between polls;
//! - `component` (wasm32 only): `component::run`, a whole poll over
//!   `switchyard-plugin`'s HTTP, settings, state and publish.
//!
//! What was seen is kept in the plugin's state, which the host commits only
//! once every event of the poll is confirmed by the broker: a poll that is
//! repeated (after a crash, a broker outage, a restart) emits the same event
//! ids, and downstream deduplication makes it harmless. The logic is native
//! code with no host dependency, tested as such.

#[cfg(target_arch = "wasm32")]
pub mod component;
pub mod listing;
pub mod paging;
pub mod seen;
pub mod walk;

pub use walk::{Finished, Walk};

/// The plugin's key-value state, as the host's `state` import offers it.
pub trait State {
    fn get(&mut self, key: &str) -> Option<Vec<u8>>;
    fn set(&mut self, key: &str, value: &[u8]);
    fn delete(&mut self, key: &str);
}

/// Whether a record is new to the feed or changed since it was last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
}

/// One event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produced {
    pub id: String,
    pub routing_key: String,
    /// A JSON object, as text, with `eventId` equal to `id`.
    pub body: String,
}

/// How one feed names and shapes its events.
pub struct Feed<'a> {
    /// Names the source in event ids, e.g. `crm`.
    pub source: &'a str,
    /// The routing key of an event for a record that is new, and changed.
    pub routing_key: fn(Change) -> &'a str,
    /// The record's fields that go into the event body (besides `eventId`,
    /// `eventType` and `timestamp`), in wire order. `id` is always written
    /// as a string.
    pub fields: &'a [&'a str],
}
