//! The SQLite backend, the embedded default: one file (`switchyard.db`) in
//! the data folder, in WAL mode with `synchronous = FULL` (a commit is on
//! disk before the deliveries it covers are acknowledged, even across a
//! power loss). One writer connection behind a lock, and a pool of
//! read-only connections that read while it writes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::copy::{
    AppliedRow, BindingRow, CHUNK, DocumentRow, IdempotencyRow, PluginVersionRow, PublishedRow,
    Rows, Sink, StateRow,
};
use super::dead_letters::indexed_event_id;
use super::error::Doing;
use super::{
    AppliedRecord, BatchCommit, Batches, Cluster, DeadLetters, Dedupe, DocumentWrite, Documents,
    EventRecords, HostRecord, Journeys, Outbox, OutboxEntry, Page, PluginState, PublishedRecord,
    QueueBindings, StoreError, StoredDeadLetter, Transfer, lock, migrations, now_ms,
};

/// The store's file name in the data folder.
pub const FILE: &str = "switchyard.db";

/// The embedded store.
pub struct Sqlite {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite").field("path", &self.path).finish()
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        classify(&e)
    }
}

/// Sorts a SQLite error: the disk or file (full, I/O, cannot open, read
/// only, locked past the busy timeout, out of memory) is an outage; a
/// primary key or unique violation is a conflict.
fn classify(e: &rusqlite::Error) -> StoreError {
    let message = super::error::chain(e);
    match e.sqlite_error_code() {
        Some(
            ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::ReadOnly
            | ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::OutOfMemory
            | ErrorCode::PermissionDenied
            | ErrorCode::FileLockingProtocolFailed
            | ErrorCode::NoLargeFileSupport,
        ) => StoreError::Unavailable(message),
        Some(ErrorCode::ConstraintViolation)
            if matches!(
                e.extended_code(),
                Some(
                    rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                        | rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                )
            ) =>
        {
            StoreError::Conflict(message)
        }
        _ => StoreError::Other(message),
    }
}

/// The extended result code of a SQLite failure.
trait ExtendedCode {
    fn extended_code(&self) -> Option<std::ffi::c_int>;
}

impl ExtendedCode for rusqlite::Error {
    fn extended_code(&self) -> Option<std::ffi::c_int> {
        match self {
            rusqlite::Error::SqliteFailure(e, _) => Some(e.extended_code),
            _ => None,
        }
    }
}

impl Sqlite {
    /// Opens (creating if needed) `switchyard.db` in `dir`, and brings its
    /// schema up to date.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("creating data folder {}: {e}", dir.display()))
        })?;
        let path = dir.join(FILE);
        let opening = format!("opening store {}", path.display());
        let mut writer = Connection::open(&path).doing(&opening)?;
        writer
            .execute_batch(
                // FULL: a commit is on disk before we acknowledge the deliveries
                // it covers, even across a power loss.
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
            )
            .doing("configuring the store")?;
        migrate(&mut writer).doing(&format!("upgrading the schema of {}", path.display()))?;
        Ok(Self {
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .doing(&format!(
                    "opening store {} for reading",
                    self.path.display()
                ))?;
                conn.busy_timeout(Duration::from_secs(5))?;
                conn
            }
        };
        let result = f(&conn);
        lock(&self.readers).push(conn);
        Ok(result?)
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction()?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Runs `f` on the writer connection (tests set pragmas with it).
    #[cfg(test)]
    pub(crate) fn with_writer<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        f(&lock(&self.writer))
    }
}

/// The schema version recorded in the file (0 before versions were).
fn schema_version(conn: &Connection) -> Result<u32, StoreError> {
    let versioned: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')",
        [],
        |r| r.get(0),
    )?;
    if !versioned {
        return Ok(0);
    }
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?)
}

/// Brings the file to the latest schema version (`migrations::SQLITE`), in
/// one transaction. A file already there is only read: opening it takes no
/// write lock from a host that has it open.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    if migrations::pending(migrations::SQLITE, schema_version(conn)?)?.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_ms INTEGER NOT NULL
         )",
    )?;
    // Again, under the write lock: another process may have migrated since.
    let found = schema_version(&tx)?;
    let pending = migrations::pending(migrations::SQLITE, found)?;
    if found == 0 {
        adopt_unversioned(&tx)?;
    }
    for step in pending {
        tx.execute_batch(step.sql)
            .doing(&format!("schema step {} ({})", step.version, step.name))?;
        tx.execute(
            "INSERT INTO schema_version (version, name, applied_ms) VALUES (?1, ?2, ?3)",
            params![step.version, step.name, now_ms()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// A store written before schema versions were recorded holds some of the
/// tables of version 1 (whose `CREATE ... IF NOT EXISTS` adds the missing
/// ones); the only column added to a table since tables were first created
/// is the outbox's `hops`, added here.
fn adopt_unversioned(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    let columns: Vec<String> = tx
        .prepare("SELECT name FROM pragma_table_info('outbox')")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if !columns.is_empty() && !columns.iter().any(|c| c == "hops") {
        tx.execute_batch("ALTER TABLE outbox ADD COLUMN hops INTEGER NOT NULL DEFAULT 0")?;
    }
    Ok(())
}

impl Documents for Sqlite {
    fn document(&self, collection: &str, key: &str) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT json FROM documents WHERE collection = ?1 AND key = ?2")?
                .query_row(params![collection, key], |r| r.get(0))
                .optional()
        })
    }

    fn scan(&self, collection: &str, after: Option<&str>, limit: u32) -> Result<Page, StoreError> {
        let entries = self.read(|c| {
            c.prepare_cached(
                "SELECT key, json FROM documents WHERE collection = ?1 AND key > ?2
                 ORDER BY key LIMIT ?3",
            )?
            .query_map(params![collection, after.unwrap_or(""), limit], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect()
        })?;
        Ok(Page::of(entries, limit))
    }

    fn collections(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT collection, COUNT(*) FROM documents GROUP BY collection ORDER BY collection",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?
            .collect()
        })
    }
}

impl PluginState for Sqlite {
    fn state_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT value FROM plugin_state WHERE plugin = ?1 AND key = ?2")?
                .query_row(params![plugin, key], |r| r.get(0))
                .optional()
        })
    }

    fn state_generation(&self, plugin: &str) -> Result<u64, StoreError> {
        let generation: Option<i64> = self.read(|c| {
            c.prepare_cached("SELECT generation FROM plugin_generations WHERE plugin = ?1")?
                .query_row(params![plugin], |r| r.get(0))
                .optional()
        })?;
        Ok(generation.unwrap_or(0) as u64)
    }
}

impl Dedupe for Sqlite {
    fn applied_among(&self, plugin: &str, ids: &[&str]) -> Result<HashSet<String>, StoreError> {
        // One query per chunk rather than one per id: a batch is checked in a
        // single round through the index.
        const CHUNK: usize = 500;
        self.read(|c| {
            let mut seen = HashSet::new();
            for chunk in ids.chunks(CHUNK) {
                let marks = vec!["?"; chunk.len()].join(",");
                let sql = format!(
                    "SELECT event_id FROM applied_events WHERE plugin = ? AND event_id IN ({marks})"
                );
                // Not `prepare_cached`: one text per batch length would evict
                // the statements that are worth caching.
                let mut stmt = c.prepare(&sql)?;
                let params = std::iter::once(&plugin).chain(chunk.iter());
                let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| r.get(0))?;
                for id in rows {
                    seen.insert(id?);
                }
            }
            Ok(seen)
        })
    }

    fn applied_by(&self, plugin: &str, event_id: &str) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT version FROM applied_events WHERE plugin = ?1 AND event_id = ?2",
            )?
            .query_row(params![plugin, event_id], |r| r.get(0))
            .optional()
        })
    }

    fn applied_count(&self, plugin: &str) -> Result<u64, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT COUNT(*) FROM applied_events WHERE plugin = ?1")?
                .query_row(params![plugin], |r| r.get(0))
        })
    }

    fn applied_by_version(&self, plugin: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT version, COUNT(*) AS n FROM applied_events WHERE plugin = ?1
                 GROUP BY version ORDER BY n DESC, version",
            )?
            .query_map(params![plugin], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
        })
    }

    fn bind_idempotency_key(&self, key: &str, body_sha256: &str) -> Result<bool, StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO api_requests (idempotency_key, body_sha256, created_ms)
                 VALUES (?1, ?2, ?3)",
                params![key, body_sha256, now_ms()],
            )?;
            let bound: String = tx.query_row(
                "SELECT body_sha256 FROM api_requests WHERE idempotency_key = ?1",
                params![key],
                |r| r.get(0),
            )?;
            Ok(bound == body_sha256)
        })
        .doing("binding an Idempotency-Key")
    }

    fn unbind_idempotency_key(&self, key: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM api_requests WHERE idempotency_key = ?1",
                params![key],
            )?;
            Ok(())
        })
        .doing("freeing an Idempotency-Key")
    }

    fn prune_applied(&self, retention: Duration) -> Result<usize, StoreError> {
        let cutoff = super::dedupe::cutoff_ms(retention);
        self.write(|tx| {
            tx.execute(
                "DELETE FROM api_requests WHERE created_ms < ?1",
                params![cutoff],
            )?;
            tx.execute(
                "DELETE FROM published_events WHERE committed_ms < ?1",
                params![cutoff],
            )?;
            Ok(tx.execute(
                "DELETE FROM applied_events WHERE applied_ms < ?1",
                params![cutoff],
            )?)
        })
        .doing("pruning applied event ids")
    }
}

impl Batches for Sqlite {
    fn commit_batch(&self, batch: &BatchCommit) -> Result<Vec<OutboxEntry>, StoreError> {
        let now = now_ms();
        self.write(|tx| {
            if let Some(generation) = batch.state_generation {
                let moved = tx
                    .prepare_cached(
                        "INSERT INTO plugin_generations (plugin, generation) VALUES (?1, 1)
                         ON CONFLICT (plugin) DO UPDATE SET generation = generation + 1
                         WHERE generation = ?2",
                    )?
                    .execute(params![batch.plugin, generation as i64])?;
                if moved == 0 || state_generation_in(tx, &batch.plugin)? != generation + 1 {
                    return Err(StoreError::Conflict(format!(
                        "the state of {:?} moved on since generation {generation}",
                        batch.plugin
                    )));
                }
            }
            let mut outbox = Vec::with_capacity(batch.publish.len());
            let mut upsert = tx.prepare_cached(
                "INSERT INTO documents (collection, key, json, updated_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (collection, key) DO UPDATE SET json = excluded.json, updated_ms = excluded.updated_ms",
            )?;
            let mut delete =
                tx.prepare_cached("DELETE FROM documents WHERE collection = ?1 AND key = ?2")?;
            for write in &batch.documents {
                match write {
                    DocumentWrite::Upsert {
                        collection,
                        key,
                        json,
                    } => upsert.execute(params![collection, key, json, now])?,
                    DocumentWrite::Delete { collection, key } => {
                        delete.execute(params![collection, key])?
                    }
                };
            }
            let mut set = tx.prepare_cached(
                "INSERT INTO plugin_state (plugin, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value",
            )?;
            let mut unset =
                tx.prepare_cached("DELETE FROM plugin_state WHERE plugin = ?1 AND key = ?2")?;
            for (key, value) in &batch.state {
                match value {
                    Some(value) => set.execute(params![batch.plugin, key, value])?,
                    None => unset.execute(params![batch.plugin, key])?,
                };
            }
            let mut applied = tx.prepare_cached(
                "INSERT INTO applied_events (plugin, event_id, version, applied_ms) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for id in &batch.applied_event_ids {
                // The message is formatted on an error only, not per event.
                applied
                    .execute(params![batch.plugin, id, batch.version, now])
                    .map_err(|e| {
                        StoreError::from(e).doing(&format!("recording event {id:?} as applied"))
                    })?;
            }
            if !batch.applied_event_ids.is_empty() {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO plugin_versions (plugin, sha256, version, first_applied_ms)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![batch.plugin, batch.version, batch.declared_version, now])?;
            }
            let mut caused = tx.prepare_cached(
                "INSERT INTO published_events
                 (source_event_id, plugin, n, event_id, routing_key, committed_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for event in &batch.publish {
                if let Some(cause) = &event.cause {
                    caused.execute(params![
                        cause.event_id,
                        batch.plugin,
                        cause.n,
                        cause.published_id,
                        event.routing_key,
                        now
                    ])?;
                }
            }
            let mut queue = tx.prepare_cached(
                "INSERT INTO outbox (plugin, routing_key, body, hops) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for event in &batch.publish {
                queue.execute(params![
                    batch.plugin,
                    event.routing_key,
                    event.body,
                    event.hops
                ])?;
                outbox.push(OutboxEntry {
                    seq: tx.last_insert_rowid(),
                    plugin: batch.plugin.clone(),
                    routing_key: event.routing_key.clone(),
                    body: event.body.clone(),
                    hops: event.hops,
                });
            }
            Ok(outbox)
        })
        .doing("committing a batch")
    }
}

/// The plugin's state generation as `tx` sees it.
fn state_generation_in(tx: &rusqlite::Transaction<'_>, plugin: &str) -> Result<u64, StoreError> {
    let generation: i64 = tx
        .prepare_cached("SELECT generation FROM plugin_generations WHERE plugin = ?1")?
        .query_row(params![plugin], |r| r.get(0))?;
    Ok(generation as u64)
}

impl Cluster for Sqlite {
    fn heartbeat(&self, id: &str, started_ms: i64, info: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO hosts (id, started_ms, last_seen_ms, info) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET started_ms = excluded.started_ms,
                 last_seen_ms = excluded.last_seen_ms, info = excluded.info",
            )?
            .execute(params![id, started_ms, now_ms(), info])?;
            Ok(())
        })
        .doing("recording the host's heartbeat")
    }

    fn hosts(&self, since_ms: i64) -> Result<Vec<HostRecord>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT id, started_ms, last_seen_ms, info FROM hosts WHERE last_seen_ms >= ?1
                 ORDER BY last_seen_ms DESC, id",
            )?
            .query_map(params![since_ms], |r| {
                Ok(HostRecord {
                    id: r.get(0)?,
                    started_ms: r.get(1)?,
                    last_seen_ms: r.get(2)?,
                    info: r.get(3)?,
                })
            })?
            .collect()
        })
    }

    fn forget_hosts(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM hosts WHERE last_seen_ms < ?1",
                params![before_ms],
            )?)
        })
    }

    fn take_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<String, StoreError> {
        let now = now_ms();
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO leases (name, holder, expires_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                 expires_ms = excluded.expires_ms
                 WHERE leases.holder = excluded.holder OR leases.expires_ms < ?4",
            )?
            .execute(params![name, holder, now + ttl_ms, now])?;
            Ok(tx
                .prepare_cached("SELECT holder FROM leases WHERE name = ?1")?
                .query_row(params![name], |r| r.get(0))?)
        })
        .doing("taking a lease")
    }

    fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
                params![name, holder],
            )?;
            Ok(())
        })
    }

    fn clock_ms(&self) -> Result<i64, StoreError> {
        Ok(now_ms())
    }
}

impl Outbox for Sqlite {
    fn pending_outbox(&self, plugin: &str) -> Result<Vec<OutboxEntry>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT seq, plugin, routing_key, body, hops FROM outbox WHERE plugin = ?1 ORDER BY seq",
            )?
            .query_map(params![plugin], outbox_entry)?
            .collect()
        })
    }

    fn outbox_done(&self, seqs: &[i64]) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?;
            for seq in seqs {
                stmt.execute(params![seq])?;
            }
            Ok(())
        })
        .doing("clearing the outbox")
    }
}

fn outbox_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxEntry> {
    Ok(OutboxEntry {
        seq: r.get(0)?,
        plugin: r.get(1)?,
        routing_key: r.get(2)?,
        body: r.get(3)?,
        hops: r.get(4)?,
    })
}

fn dead_letter(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredDeadLetter> {
    Ok(StoredDeadLetter {
        seq: r.get(0)?,
        plugin: r.get(1)?,
        routing_key: r.get(2)?,
        body: r.get(3)?,
        reason: r.get(4)?,
        version: r.get(5)?,
        failed_ms: r.get(6)?,
    })
}

impl DeadLetters for Sqlite {
    fn add_dead_letters(&self, letters: &[StoredDeadLetter]) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut insert = tx.prepare_cached(
                "INSERT INTO dead_letters (plugin, routing_key, body, reason, version, failed_ms, event_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for l in letters {
                insert.execute(params![
                    l.plugin,
                    l.routing_key,
                    l.body,
                    l.reason,
                    l.version,
                    l.failed_ms,
                    indexed_event_id(&l.body)
                ])?;
            }
            Ok(())
        })
        .doing("keeping dead letters")
    }

    fn dead_letters(
        &self,
        plugin: &str,
        limit: u32,
    ) -> Result<(Vec<StoredDeadLetter>, u64), StoreError> {
        self.read(|c| {
            let total = c
                .prepare_cached("SELECT COUNT(*) FROM dead_letters WHERE plugin = ?1")?
                .query_row(params![plugin], |r| r.get(0))?;
            let letters = c
                .prepare_cached(
                    "SELECT seq, plugin, routing_key, body, reason, version, failed_ms
                     FROM dead_letters WHERE plugin = ?1 ORDER BY seq LIMIT ?2",
                )?
                .query_map(params![plugin, limit], dead_letter)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((letters, total))
        })
    }

    fn remove_dead_letters(&self, seqs: &[i64]) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached("DELETE FROM dead_letters WHERE seq = ?1")?;
            for seq in seqs {
                stmt.execute(params![seq])?;
            }
            Ok(())
        })
        .doing("forgetting dead letters")
    }
}

impl QueueBindings for Sqlite {
    fn queue_bindings(&self, plugin: &str) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT key FROM queue_bindings WHERE plugin = ?1 ORDER BY key")?
                .query_map(params![plugin], |r| r.get(0))?
                .collect()
        })
    }

    fn set_queue_bindings(&self, plugin: &str, keys: &[String]) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM queue_bindings WHERE plugin = ?1",
                params![plugin],
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO queue_bindings (plugin, key) VALUES (?1, ?2)",
            )?;
            for key in keys {
                insert.execute(params![plugin, key])?;
            }
            Ok(())
        })
        .doing("recording queue bindings")
    }
}

impl Journeys for Sqlite {
    fn event_records(
        &self,
        event_id: &str,
        plugins: &[String],
    ) -> Result<EventRecords, StoreError> {
        self.read(|c| {
            let mut names: Vec<String> = c
                .prepare_cached("SELECT DISTINCT plugin FROM plugin_versions")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            names.extend(plugins.iter().cloned());
            names.sort();
            names.dedup();
            let mut applied = Vec::new();
            let mut find = c.prepare_cached(
                "SELECT a.version, v.version, a.applied_ms FROM applied_events a
                 LEFT JOIN plugin_versions v ON v.plugin = a.plugin AND v.sha256 = a.version
                 WHERE a.plugin = ?1 AND a.event_id = ?2",
            )?;
            for plugin in names {
                if let Some((sha256, version, applied_ms)) = find
                    .query_row(params![plugin, event_id], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()?
                {
                    applied.push(AppliedRecord {
                        plugin,
                        sha256,
                        version,
                        applied_ms,
                    });
                }
            }
            let published = c
                .prepare_cached(
                    "SELECT plugin, n, event_id, routing_key, committed_ms FROM published_events
                     WHERE source_event_id = ?1 ORDER BY plugin, n",
                )?
                .query_map(params![event_id], |r| {
                    Ok(PublishedRecord {
                        plugin: r.get(0)?,
                        n: r.get(1)?,
                        event_id: r.get(2)?,
                        routing_key: r.get(3)?,
                        committed_ms: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let dead_letters = c
                .prepare_cached(
                    "SELECT seq, plugin, routing_key, body, reason, version, failed_ms
                     FROM dead_letters WHERE event_id = ?1 ORDER BY seq",
                )?
                .query_map(params![event_id], dead_letter)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(EventRecords {
                applied,
                published,
                dead_letters,
            })
        })
    }

    fn declared_version(&self, plugin: &str, sha256: &str) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT version FROM plugin_versions WHERE plugin = ?1 AND sha256 = ?2",
            )?
            .query_row(params![plugin, sha256], |r| r.get(0))
            .optional()
        })
    }
}

/// Every table a copy moves, and whether it holds anything.
const TABLES: &[&str] = &[
    "documents",
    "plugin_state",
    "applied_events",
    "outbox",
    "api_requests",
    "dead_letters",
    "queue_bindings",
    "plugin_versions",
    "published_events",
];

/// Streams `sql`'s rows to `each` in chunks of [`CHUNK`], wrapped by `wrap`.
fn export_table<T>(
    c: &Connection,
    sql: &str,
    row: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    wrap: impl Fn(Vec<T>) -> Rows,
    each: &mut Sink<'_>,
) -> Result<(), StoreError> {
    let mut stmt = c.prepare(sql)?;
    let mut rows = stmt.query([])?;
    let mut chunk = Vec::with_capacity(CHUNK);
    while let Some(r) = rows.next()? {
        chunk.push(row(r)?);
        if chunk.len() == CHUNK {
            each(wrap(std::mem::take(&mut chunk)))?;
        }
    }
    if !chunk.is_empty() {
        each(wrap(chunk))?;
    }
    Ok(())
}

impl Transfer for Sqlite {
    fn is_empty(&self) -> Result<bool, StoreError> {
        self.read(|c| {
            for table in TABLES {
                let any: bool =
                    c.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), [], |r| {
                        r.get(0)
                    })?;
                if any {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    fn export(&self, each: &mut Sink<'_>) -> Result<(), StoreError> {
        let mut conn = lock(&self.writer);
        // A read transaction: one consistent snapshot of every table.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        export_table(
            &tx,
            "SELECT collection, key, json, updated_ms FROM documents ORDER BY collection, key",
            |r| {
                Ok(DocumentRow {
                    collection: r.get(0)?,
                    key: r.get(1)?,
                    json: r.get(2)?,
                    updated_ms: r.get(3)?,
                })
            },
            Rows::Documents,
            each,
        )?;
        export_table(
            &tx,
            "SELECT plugin, key, value FROM plugin_state ORDER BY plugin, key",
            |r| {
                Ok(StateRow {
                    plugin: r.get(0)?,
                    key: r.get(1)?,
                    value: r.get(2)?,
                })
            },
            Rows::State,
            each,
        )?;
        export_table(
            &tx,
            "SELECT plugin, event_id, version, applied_ms FROM applied_events ORDER BY plugin, event_id",
            |r| {
                Ok(AppliedRow {
                    plugin: r.get(0)?,
                    event_id: r.get(1)?,
                    version: r.get(2)?,
                    applied_ms: r.get(3)?,
                })
            },
            Rows::Applied,
            each,
        )?;
        export_table(
            &tx,
            "SELECT seq, plugin, routing_key, body, hops FROM outbox ORDER BY seq",
            outbox_entry,
            Rows::Outbox,
            each,
        )?;
        export_table(
            &tx,
            "SELECT idempotency_key, body_sha256, created_ms FROM api_requests ORDER BY idempotency_key",
            |r| {
                Ok(IdempotencyRow {
                    key: r.get(0)?,
                    body_sha256: r.get(1)?,
                    created_ms: r.get(2)?,
                })
            },
            Rows::IdempotencyKeys,
            each,
        )?;
        export_table(
            &tx,
            "SELECT seq, plugin, routing_key, body, reason, version, failed_ms FROM dead_letters ORDER BY seq",
            dead_letter,
            Rows::DeadLetters,
            each,
        )?;
        export_table(
            &tx,
            "SELECT plugin, key FROM queue_bindings ORDER BY plugin, key",
            |r| {
                Ok(BindingRow {
                    plugin: r.get(0)?,
                    key: r.get(1)?,
                })
            },
            Rows::QueueBindings,
            each,
        )?;
        export_table(
            &tx,
            "SELECT plugin, sha256, version, first_applied_ms FROM plugin_versions ORDER BY plugin, sha256",
            |r| {
                Ok(PluginVersionRow {
                    plugin: r.get(0)?,
                    sha256: r.get(1)?,
                    version: r.get(2)?,
                    first_applied_ms: r.get(3)?,
                })
            },
            Rows::PluginVersions,
            each,
        )?;
        export_table(
            &tx,
            "SELECT source_event_id, plugin, n, event_id, routing_key, committed_ms
             FROM published_events ORDER BY source_event_id, plugin, n",
            |r| {
                Ok(PublishedRow {
                    source_event_id: r.get(0)?,
                    plugin: r.get(1)?,
                    n: r.get(2)?,
                    event_id: r.get(3)?,
                    routing_key: r.get(4)?,
                    committed_ms: r.get(5)?,
                })
            },
            Rows::Published,
            each,
        )?;
        tx.finish()?;
        Ok(())
    }

    fn import(
        &self,
        fill: &mut dyn FnMut(&mut Sink<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for table in TABLES {
            let any: bool =
                tx.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), [], |r| {
                    r.get(0)
                })?;
            if any {
                return Err(StoreError::Other(format!(
                    "the target store is not empty (its {table} table holds rows)"
                )));
            }
        }
        fill(&mut |rows| import_rows(&tx, rows))?;
        tx.commit()?;
        Ok(())
    }
}

fn import_rows(tx: &rusqlite::Transaction<'_>, rows: Rows) -> Result<(), StoreError> {
    match rows {
        Rows::Documents(rows) => {
            let mut s = tx.prepare_cached(
                "INSERT INTO documents (collection, key, json, updated_ms) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for r in rows {
                s.execute(params![r.collection, r.key, r.json, r.updated_ms])?;
            }
        }
        Rows::State(rows) => {
            let mut s = tx.prepare_cached(
                "INSERT INTO plugin_state (plugin, key, value) VALUES (?1, ?2, ?3)",
            )?;
            for r in rows {
                s.execute(params![r.plugin, r.key, r.value])?;
            }
        }
        Rows::Applied(rows) => {
            let mut s = tx.prepare_cached(
                "INSERT INTO applied_events (plugin, event_id, version, applied_ms) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for r in rows {
                s.execute(params![r.plugin, r.event_id, r.version, r.applied_ms])?;
            }
        }
        Rows::Outbox(rows) => {
            let mut s = tx.prepare_cached(
                "INSERT INTO outbox (seq, plugin, routing_key, body, hops) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for r in rows {
                s.execute(params![r.seq, r.plugin, r.routing_key, r.body, r.hops])?;
            }
        }
        Rows::IdempotencyKeys(rows) => {
            let mut s = tx.prepare_cached(
                "INSERT INTO api_requests (idempotency_key, body_sha256, created_ms) VALUES (?1, ?2, ?3)",
            )?;
            for r in rows {
                s.execute(params![r.key, r.body_sha256, r.created_ms])?;
            }
        }
        Rows::DeadLetters(rows) => {
            let mut s = tx.prepare_cached(
                "INSERT INTO dead_letters (seq, plugin, routing_key, body, reason, version, failed_ms, event_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for r in rows {
                s.execute(params![
                    r.seq,
                    r.plugin,
                    r.routing_key,
                    r.body,
                    r.reason,
                    r.version,
                    r.failed_ms,
                    indexed_event_id(&r.body)
                ])?;
            }
        }
        Rows::PluginVersions(rows) => {
            let mut s = tx.prepare_cached(
                "INSERT INTO plugin_versions (plugin, sha256, version, first_applied_ms)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for r in rows {
                s.execute(params![r.plugin, r.sha256, r.version, r.first_applied_ms])?;
            }
        }
        Rows::Published(rows) => {
            let mut s = tx.prepare_cached(
                "INSERT INTO published_events
                 (source_event_id, plugin, n, event_id, routing_key, committed_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for r in rows {
                s.execute(params![
                    r.source_event_id,
                    r.plugin,
                    r.n,
                    r.event_id,
                    r.routing_key,
                    r.committed_ms
                ])?;
            }
        }
        Rows::QueueBindings(rows) => {
            let mut s =
                tx.prepare_cached("INSERT INTO queue_bindings (plugin, key) VALUES (?1, ?2)")?;
            for r in rows {
                s.execute(params![r.plugin, r.key])?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn an_outbox_from_before_hop_counting_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        {
            let old = Connection::open(dir.path().join(FILE)).unwrap();
            old.execute_batch(
                "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, plugin TEXT NOT NULL,
                 routing_key TEXT NOT NULL, body TEXT NOT NULL);
                 INSERT INTO outbox (plugin, routing_key, body) VALUES ('p', 'k', '{}');",
            )
            .unwrap();
        }
        let store = Store::sqlite(dir.path()).unwrap();
        let db = store.blocking();
        assert_eq!(db.pending_outbox("p").unwrap()[0].hops, 0);
        db.commit_batch(&crate::store::suite::batch(&["e1"]))
            .unwrap();
        assert_eq!(db.pending_outbox("p").unwrap().len(), 2);
    }

    /// The schema of the store as the code before versioned migrations
    /// wrote it, with a row in each table.
    const UNVERSIONED: &str = include_str!("../../tests/fixtures/unversioned-store.sql");

    #[test]
    fn a_store_from_before_schema_versions_opens_and_carries_on() {
        let dir = tempfile::tempdir().unwrap();
        Connection::open(dir.path().join(FILE))
            .unwrap()
            .execute_batch(UNVERSIONED)
            .unwrap();
        let store = Store::sqlite(dir.path()).unwrap();
        let db = store.blocking();
        assert_eq!(db.document("c", "k").unwrap().as_deref(), Some("{}"));
        assert_eq!(db.applied_by("p", "e0").unwrap().as_deref(), Some("v0"));
        db.commit_batch(&crate::store::suite::batch(&["e1"]))
            .unwrap();
        assert_eq!(db.applied_count("p").unwrap(), 2);
        drop(store);
        let version: u32 = Connection::open(dir.path().join(FILE))
            .unwrap()
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, migrations::latest(migrations::SQLITE));
        Store::sqlite(dir.path()).expect("opens again at the latest version");
    }

    #[test]
    fn a_store_from_a_newer_switchyard_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::sqlite(dir.path()).unwrap());
        Connection::open(dir.path().join(FILE))
            .unwrap()
            .execute(
                "INSERT INTO schema_version (version, name, applied_ms) VALUES (99, 'future', 0)",
                [],
            )
            .unwrap();
        let error = Store::sqlite(dir.path()).unwrap_err();
        assert!(!error.is_outage());
        assert!(
            error.to_string().contains(
                &format!(
                "store schema version 99 is newer than this switchyard knows ({}): upgrade switchyard",
                super::migrations::latest(super::migrations::SQLITE)
            )
            ),
            "{error}"
        );
    }

    #[test]
    fn a_full_disk_is_an_outage() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Sqlite::open(dir.path()).unwrap();
        sqlite
            .commit_batch(&crate::store::suite::batch(&["e0"]))
            .unwrap();
        sqlite.with_writer(|c| {
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
            c.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
                .unwrap();
        });
        let mut big = crate::store::suite::batch(&["e1"]);
        big.documents = (0..200)
            .map(|i| DocumentWrite::Upsert {
                collection: "c".into(),
                key: format!("k{i}"),
                json: format!("\"{}\"", "x".repeat(1000)),
            })
            .collect();
        let error = sqlite.commit_batch(&big).unwrap_err();
        assert!(error.is_outage(), "{error:?}");
        assert!(error.to_string().contains("full"), "{error}");
        assert!(sqlite.applied_among("p", &["e1"]).unwrap().is_empty());
    }
}
