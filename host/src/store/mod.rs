//! The store: everything Switchyard keeps, split by concern, behind one
//! interface with two backends.
//!
//! Concerns (each file holds its types and its part of the interface):
//! - [`documents`], the analytics collections;
//! - [`state`], each plugin's private key-value state;
//! - [`dedupe`], applied event ids (with the version that applied them)
//!   and the API's Idempotency-Keys;
//! - [`outbox`], events committed with a batch, kept until published;
//! - [`dead_letters`], the embedded bus's dead letters;
//! - [`queue_bindings`], the binding keys of each plugin's queue;
//! - [`journey`], what the store holds about one event id;
//! - [`batch`], a batch's effects across documents, state, applied ids and
//!   outbox, committed in ONE transaction on every backend;
//! - [`cluster`], hosts' heartbeats and leases, for hosts sharing a store;
//! - [`health`], whether the store answers, as this host last found it;
//! - [`copy`], moving a whole store into an empty one.
//!
//! Backends, one file each, implementing all of [`Backend`]:
//! [`sqlite`] (the embedded default, one file in the data folder) and
//! [`postgres`] (a shared server, for several hosts). Their schemas are
//! versioned per backend ([`migrations`]). Their errors are sorted into
//! [`StoreError`]: an outage, a conflict, or anything else.
//!
//! Every backend call blocks. [`Store`] is the one way in: a cheap,
//! cloneable handle whose [`Store::call`] runs a backend call on tokio's
//! blocking pool, for async code; code already on a blocking thread (a
//! plugin's `state` and `collections` imports, the pipeline's batch worker)
//! calls [`Store::blocking`] directly.
//!
//! Poisoned locks: a lock of the store poisoned by a panic is taken over
//! ([`lock`]), never propagated as a panic. What the store's locks guard are
//! idle connections; a transaction that a panic interrupted is rolled back
//! when it is dropped during the unwinding (rusqlite's and postgres's
//! transactions both roll back on drop), so a connection is never left
//! half-way through a write. The panic itself reaches the caller as
//! [`StoreError::Other`] ("store worker panicked") through [`Store::call`].
//!
//! The store knows nothing of brokers or plugins beyond their names.

pub mod batch;
pub mod cluster;
pub mod copy;
pub mod dead_letters;
pub mod dedupe;
pub mod documents;
pub mod error;
pub mod health;
pub mod journey;
pub mod migrations;
pub mod outbox;
pub mod postgres;
pub mod queue_bindings;
pub mod sqlite;
pub mod state;

#[cfg(test)]
mod suite;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

pub use batch::{BatchCommit, Batches};
pub use cluster::{Cluster, HostRecord};
pub use copy::{CopyReport, Transfer};
pub use dead_letters::{DeadLetters, StoredDeadLetter};
pub use dedupe::Dedupe;
pub use documents::{DocumentWrite, Documents, Page};
pub use error::StoreError;
pub use health::StoreHealth;
pub use journey::{AppliedRecord, EventRecords, Journeys, PublishedRecord};
pub use outbox::{Cause, Outbox, OutboxEntry, PublishWrite};
pub use queue_bindings::QueueBindings;
pub use state::PluginState;

/// Everything a backend does: every concern, blocking.
pub trait Backend:
    Documents
    + PluginState
    + Dedupe
    + Outbox
    + DeadLetters
    + QueueBindings
    + Batches
    + Cluster
    + Transfer
    + Journeys
    + fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<T> Backend for T where
    T: Documents
        + PluginState
        + Dedupe
        + Outbox
        + DeadLetters
        + QueueBindings
        + Batches
        + Cluster
        + Transfer
        + Journeys
        + fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// Where the store is: `--store`.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// `switchyard.db` in this folder.
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL, password included: shown
    /// only redacted (`Debug` and `Display`).
    Postgres(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(dir) => write!(f, "sqlite {}", dir.join(sqlite::FILE).display()),
            Location::Postgres(url) => {
                write!(f, "postgres {}", crate::config::redact_url(url))
            }
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

/// The store: a cloneable handle on one backend.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.backend.fmt(f)
    }
}

impl Store {
    /// Opens (creating and migrating as needed) the store at `location`.
    /// Blocking; async code uses [`Store::open`].
    pub fn open_blocking(location: &Location) -> Result<Self, StoreError> {
        let backend: Arc<dyn Backend> = match location {
            Location::Sqlite(dir) => Arc::new(sqlite::Sqlite::open(dir)?),
            Location::Postgres(url) => Arc::new(postgres::Postgres::open(url)?),
        };
        Ok(Self { backend })
    }

    /// [`Store::open_blocking`] on the blocking pool.
    pub async fn open(location: &Location) -> Result<Self, StoreError> {
        let location = location.clone();
        tokio::task::spawn_blocking(move || Self::open_blocking(&location))
            .await
            .map_err(panicked)?
    }

    /// The embedded store in `dir` (blocking): tools and tests.
    pub fn sqlite(dir: &Path) -> Result<Self, StoreError> {
        Self::open_blocking(&Location::Sqlite(dir.to_owned()))
    }

    /// Runs `f` on the backend on tokio's blocking pool: the way async code
    /// uses the store.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Backend) -> Result<T, StoreError> + Send + 'static,
    {
        let backend = Arc::clone(&self.backend);
        tokio::task::spawn_blocking(move || f(&*backend))
            .await
            .map_err(panicked)?
    }

    /// Copies every concern of this store into `target`, which must be
    /// empty; all or nothing.
    pub async fn copy_into(&self, target: &Store) -> Result<CopyReport, StoreError> {
        let from = self.clone();
        target.call(move |to| copy::copy(from.blocking(), to)).await
    }

    /// The backend, for code already on a blocking thread (never call it
    /// on the async reactor).
    pub fn blocking(&self) -> &dyn Backend {
        &*self.backend
    }
}

fn panicked(e: tokio::task::JoinError) -> StoreError {
    StoreError::Other(format!("store worker panicked: {e}"))
}

/// Takes a store lock, taking over one that a panic poisoned (the policy is
/// in the module doc).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| {
        tracing::warn!("a store lock was poisoned by a panic; taking it over");
        poisoned.into_inner()
    })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
