//! Hosts sharing a store: each one's heartbeat (when it was last seen and
//! what it runs, for `GET /cluster`), and leases on jobs that one host at a
//! time must do (a producer's polls). Times are the store's clock (the
//! database server's for PostgreSQL), so that hosts whose clocks differ
//! agree on who holds a lease.

use super::StoreError;

/// A host as its last heartbeat left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRecord {
    pub id: String,
    pub started_ms: i64,
    pub last_seen_ms: i64,
    /// What it runs, as JSON text (the host's own description).
    pub info: String,
}

/// Heartbeats and leases.
pub trait Cluster {
    /// Records that host `id` (up since `started_ms`) is alive now and runs
    /// what `info` (JSON text) says.
    fn heartbeat(&self, id: &str, started_ms: i64, info: &str) -> Result<(), StoreError>;

    /// Every host seen since `since_ms`, the most recently seen first.
    fn hosts(&self, since_ms: i64) -> Result<Vec<HostRecord>, StoreError>;

    /// Forgets hosts last seen before `before_ms`; returns how many.
    fn forget_hosts(&self, before_ms: i64) -> Result<usize, StoreError>;

    /// Takes lease `name` for `holder` for `ttl_ms` from now if it is free,
    /// expired or already `holder`'s (then it is renewed); returns who holds
    /// it afterwards.
    fn take_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<String, StoreError>;

    /// Gives up lease `name` if `holder` has it.
    fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;

    /// The store's clock, in milliseconds since the Unix epoch.
    fn clock_ms(&self) -> Result<i64, StoreError>;
}
