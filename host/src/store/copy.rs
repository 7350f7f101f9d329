//! Moving a store: every row of every concern read from one backend and
//! written into another, empty, one in a single transaction
//! (`switchyard store copy --to postgres://...`).

use std::fmt;

use super::{Backend, OutboxEntry, StoreError, StoredDeadLetter};

/// Rows an export hands over at a time (bounds the memory of a copy).
pub const CHUNK: usize = 5_000;

/// A document as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRow {
    pub collection: String,
    pub key: String,
    pub json: String,
    pub updated_ms: i64,
}

/// A plugin's state value as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRow {
    pub plugin: String,
    pub key: String,
    pub value: Vec<u8>,
}

/// An applied event id, the version that applied it, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedRow {
    pub plugin: String,
    pub event_id: String,
    pub version: String,
    pub applied_ms: i64,
}

/// The version a plugin file declared, recorded by its first commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginVersionRow {
    pub plugin: String,
    pub sha256: String,
    pub version: String,
    pub first_applied_ms: i64,
}

/// An event a plugin published because of another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedRow {
    pub source_event_id: String,
    pub plugin: String,
    pub n: u32,
    pub event_id: String,
    pub routing_key: String,
    pub committed_ms: i64,
}

/// An API Idempotency-Key and the body it first came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRow {
    pub key: String,
    pub body_sha256: String,
    pub created_ms: i64,
}

/// A binding key of a plugin's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRow {
    pub plugin: String,
    pub key: String,
}

/// A chunk of one concern's rows, in primary-key order.
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    Documents(Vec<DocumentRow>),
    State(Vec<StateRow>),
    Applied(Vec<AppliedRow>),
    Outbox(Vec<OutboxEntry>),
    IdempotencyKeys(Vec<IdempotencyRow>),
    DeadLetters(Vec<StoredDeadLetter>),
    QueueBindings(Vec<BindingRow>),
    PluginVersions(Vec<PluginVersionRow>),
    Published(Vec<PublishedRow>),
}

impl Rows {
    pub fn len(&self) -> usize {
        match self {
            Rows::Documents(r) => r.len(),
            Rows::State(r) => r.len(),
            Rows::Applied(r) => r.len(),
            Rows::Outbox(r) => r.len(),
            Rows::IdempotencyKeys(r) => r.len(),
            Rows::DeadLetters(r) => r.len(),
            Rows::QueueBindings(r) => r.len(),
            Rows::PluginVersions(r) => r.len(),
            Rows::Published(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Hands over rows, one chunk at a time.
pub type Sink<'a> = dyn FnMut(Rows) -> Result<(), StoreError> + 'a;

/// Reading a whole store out and writing one in.
pub trait Transfer {
    /// Whether the store holds nothing at all, of any concern.
    fn is_empty(&self) -> Result<bool, StoreError>;

    /// Every row of every concern, in chunks of at most [`CHUNK`], from one
    /// consistent read.
    fn export(&self, each: &mut Sink<'_>) -> Result<(), StoreError>;

    /// Writes what `fill` hands to its sink into this store, in one
    /// transaction, keeping sequence numbers and times. Refuses (and writes
    /// nothing) unless the store is empty.
    fn import(
        &self,
        fill: &mut dyn FnMut(&mut Sink<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
}

/// How many rows of each concern a copy moved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub documents: u64,
    pub state: u64,
    pub applied: u64,
    pub outbox: u64,
    pub idempotency_keys: u64,
    pub dead_letters: u64,
    pub queue_bindings: u64,
    pub plugin_versions: u64,
    pub published: u64,
}

impl CopyReport {
    fn count(&mut self, rows: &Rows) {
        let n = rows.len() as u64;
        match rows {
            Rows::Documents(_) => self.documents += n,
            Rows::State(_) => self.state += n,
            Rows::Applied(_) => self.applied += n,
            Rows::Outbox(_) => self.outbox += n,
            Rows::IdempotencyKeys(_) => self.idempotency_keys += n,
            Rows::DeadLetters(_) => self.dead_letters += n,
            Rows::QueueBindings(_) => self.queue_bindings += n,
            Rows::PluginVersions(_) => self.plugin_versions += n,
            Rows::Published(_) => self.published += n,
        }
    }
}

impl fmt::Display for CopyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "documents          {}", self.documents)?;
        writeln!(f, "plugin state keys  {}", self.state)?;
        writeln!(f, "applied event ids  {}", self.applied)?;
        writeln!(f, "outbox events      {}", self.outbox)?;
        writeln!(f, "idempotency keys   {}", self.idempotency_keys)?;
        writeln!(f, "dead letters       {}", self.dead_letters)?;
        writeln!(f, "queue bindings     {}", self.queue_bindings)?;
        writeln!(f, "plugin versions    {}", self.plugin_versions)?;
        write!(f, "published events   {}", self.published)
    }
}

/// Copies every concern of `from` into `to`, which must be empty; all or
/// nothing. Blocking.
pub fn copy(from: &dyn Backend, to: &dyn Backend) -> Result<CopyReport, StoreError> {
    if !to.is_empty()? {
        return Err(StoreError::Other(
            "the target store is not empty: copy only into a new, empty database".into(),
        ));
    }
    let mut report = CopyReport::default();
    to.import(&mut |sink| {
        from.export(&mut |rows| {
            report.count(&rows);
            sink(rows)
        })
    })?;
    Ok(report)
}
