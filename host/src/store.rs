//! The embedded analytics store: one SQLite file in WAL mode holding the
//! document collections, each plugin's private state, the ids of applied
//! events (for deduplication) and the outbox of events still to publish.
//!
//! A batch's effects are written by [`Store::commit_batch`] in a single
//! transaction, so a crash leaves either all of them or none. It knows
//! nothing of brokers or plugins beyond their names.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    key        TEXT NOT NULL,
    json       TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (collection, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS plugin_state (
    plugin TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  BLOB NOT NULL,
    PRIMARY KEY (plugin, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS applied_events (
    plugin     TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    version    TEXT NOT NULL,
    applied_ms INTEGER NOT NULL,
    PRIMARY KEY (plugin, event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS applied_events_by_time ON applied_events (applied_ms);
CREATE TABLE IF NOT EXISTS outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    plugin      TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    body        TEXT NOT NULL,
    hops        INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    plugin      TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    body        BLOB NOT NULL,
    reason      TEXT NOT NULL,
    version     TEXT NOT NULL,
    failed_ms   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_requests (
    idempotency_key TEXT PRIMARY KEY,
    body_sha256     TEXT NOT NULL,
    created_ms      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS api_requests_by_time ON api_requests (created_ms);
CREATE TABLE IF NOT EXISTS queue_bindings (
    plugin TEXT NOT NULL,
    key    TEXT NOT NULL,
    PRIMARY KEY (plugin, key)
) WITHOUT ROWID;
";

/// One change to a document collection.
#[derive(Debug, Clone, PartialEq)]
pub enum DocumentWrite {
    Upsert {
        collection: String,
        key: String,
        json: String,
    },
    Delete {
        collection: String,
        key: String,
    },
}

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
}

/// A dead letter kept in the store (with the embedded bus, which has no
/// dead-letter queues).
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

/// Everything one batch of one plugin changes, committed together.
#[derive(Debug, Default)]
pub struct BatchCommit {
    pub plugin: String,
    /// The sha256 of the plugin file that handled the batch.
    pub version: String,
    pub applied_event_ids: Vec<String>,
    pub documents: Vec<DocumentWrite>,
    /// Final value of each state key the batch touched; `None` deletes it.
    pub state: Vec<(String, Option<Vec<u8>>)>,
    /// The events to publish after the commit.
    pub publish: Vec<PublishWrite>,
}

/// A page of a collection, in key order.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub entries: Vec<(String, String)>,
    /// The last key of a full page, to pass as `after` for the next one.
    pub next: Option<String>,
}

/// The embedded store. Cheap to share behind an `Arc`; every method blocks
/// on SQLite, so async callers use `spawn_blocking`.
pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) `switchyard.db` in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data folder {}", dir.display()))?;
        let path = dir.join("switchyard.db");
        let writer =
            Connection::open(&path).with_context(|| format!("opening store {}", path.display()))?;
        writer
            .execute_batch(
                // FULL: a commit is on disk before we acknowledge the deliveries
                // it covers, even across a power loss.
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
            )
            .context("configuring the store")?;
        writer
            .execute_batch(SCHEMA)
            .context("creating the store schema")?;
        migrate(&writer).context("upgrading the store schema")?;
        Ok(Self {
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let pooled = self.readers.lock().expect("reader pool poisoned").pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .with_context(|| format!("opening store {} for reading", self.path.display()))?;
                conn.busy_timeout(Duration::from_secs(5))?;
                conn
            }
        };
        let result = f(&conn);
        self.readers
            .lock()
            .expect("reader pool poisoned")
            .push(conn);
        Ok(result?)
    }

    /// A plugin's committed state value.
    pub fn state_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>> {
        self.read(|c| {
            c.prepare_cached("SELECT value FROM plugin_state WHERE plugin = ?1 AND key = ?2")?
                .query_row(params![plugin, key], |r| r.get(0))
                .optional()
        })
    }

    /// Which of `ids` the plugin has already applied.
    pub fn applied_among(&self, plugin: &str, ids: &[&str]) -> Result<HashSet<String>> {
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

    /// The version (plugin sha256) that applied an event, if it was applied.
    pub fn applied_by(&self, plugin: &str, event_id: &str) -> Result<Option<String>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT version FROM applied_events WHERE plugin = ?1 AND event_id = ?2",
            )?
            .query_row(params![plugin, event_id], |r| r.get(0))
            .optional()
        })
    }

    /// Commits a batch in one transaction and returns its outbox entries
    /// (with their sequence numbers), to be published and then
    /// [`Store::outbox_done`].
    pub fn commit_batch(&self, batch: &BatchCommit) -> Result<Vec<OutboxEntry>> {
        let now = now_ms();
        let mut conn = self.writer.lock().expect("store writer poisoned");
        let tx = conn.transaction().context("starting a store transaction")?;
        let mut outbox = Vec::with_capacity(batch.publish.len());
        {
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
                applied
                    .execute(params![batch.plugin, id, batch.version, now])
                    .with_context(|| format!("recording event {id:?} as applied"))?;
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
        }
        tx.commit().context("committing a batch")?;
        Ok(outbox)
    }

    /// Events of `plugin` committed but not yet confirmed by the broker.
    pub fn pending_outbox(&self, plugin: &str) -> Result<Vec<OutboxEntry>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT seq, plugin, routing_key, body, hops FROM outbox WHERE plugin = ?1 ORDER BY seq",
            )?
            .query_map(params![plugin], |r| {
                Ok(OutboxEntry {
                    seq: r.get(0)?,
                    plugin: r.get(1)?,
                    routing_key: r.get(2)?,
                    body: r.get(3)?,
                    hops: r.get(4)?,
                })
            })?
            .collect()
        })
    }

    /// Forgets outbox entries the broker has confirmed.
    pub fn outbox_done(&self, seqs: &[i64]) -> Result<()> {
        let mut conn = self.writer.lock().expect("store writer poisoned");
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?;
            for seq in seqs {
                stmt.execute(params![seq])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// One document.
    pub fn document(&self, collection: &str, key: &str) -> Result<Option<String>> {
        self.read(|c| {
            c.prepare_cached("SELECT json FROM documents WHERE collection = ?1 AND key = ?2")?
                .query_row(params![collection, key], |r| r.get(0))
                .optional()
        })
    }

    /// Up to `limit` documents of `collection` with keys after `after`.
    pub fn scan(&self, collection: &str, after: Option<&str>, limit: u32) -> Result<Page> {
        let entries: Vec<(String, String)> = self.read(|c| {
            c.prepare_cached(
                "SELECT key, json FROM documents WHERE collection = ?1 AND key > ?2
                 ORDER BY key LIMIT ?3",
            )?
            .query_map(params![collection, after.unwrap_or(""), limit], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect()
        })?;
        let next = if limit > 0 && entries.len() == limit as usize {
            entries.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        Ok(Page { entries, next })
    }

    /// How many events a plugin has applied (within the retention window).
    pub fn applied_count(&self, plugin: &str) -> Result<u64> {
        self.read(|c| {
            c.prepare_cached("SELECT COUNT(*) FROM applied_events WHERE plugin = ?1")?
                .query_row(params![plugin], |r| r.get(0))
        })
    }

    /// How many events each version (plugin sha256) of a plugin applied,
    /// within the retention window, most first.
    pub fn applied_by_version(&self, plugin: &str) -> Result<Vec<(String, u64)>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT version, COUNT(*) AS n FROM applied_events WHERE plugin = ?1
                 GROUP BY version ORDER BY n DESC, version",
            )?
            .query_map(params![plugin], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
        })
    }

    /// Keeps dead letters (`seq` is ignored and assigned).
    pub fn add_dead_letters(&self, letters: &[StoredDeadLetter]) -> Result<()> {
        let mut conn = self.writer.lock().expect("store writer poisoned");
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO dead_letters (plugin, routing_key, body, reason, version, failed_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for l in letters {
                insert.execute(params![
                    l.plugin,
                    l.routing_key,
                    l.body,
                    l.reason,
                    l.version,
                    l.failed_ms
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A plugin's oldest `limit` stored dead letters, and how many it has.
    pub fn dead_letters(&self, plugin: &str, limit: u32) -> Result<(Vec<StoredDeadLetter>, u64)> {
        self.read(|c| {
            let total = c
                .prepare_cached("SELECT COUNT(*) FROM dead_letters WHERE plugin = ?1")?
                .query_row(params![plugin], |r| r.get(0))?;
            let letters = c
                .prepare_cached(
                    "SELECT seq, plugin, routing_key, body, reason, version, failed_ms
                     FROM dead_letters WHERE plugin = ?1 ORDER BY seq LIMIT ?2",
                )?
                .query_map(params![plugin, limit], |r| {
                    Ok(StoredDeadLetter {
                        seq: r.get(0)?,
                        plugin: r.get(1)?,
                        routing_key: r.get(2)?,
                        body: r.get(3)?,
                        reason: r.get(4)?,
                        version: r.get(5)?,
                        failed_ms: r.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((letters, total))
        })
    }

    /// Forgets stored dead letters (replayed).
    pub fn remove_dead_letters(&self, seqs: &[i64]) -> Result<()> {
        let mut conn = self.writer.lock().expect("store writer poisoned");
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached("DELETE FROM dead_letters WHERE seq = ?1")?;
            for seq in seqs {
                stmt.execute(params![seq])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The binding keys last declared for a plugin's queue.
    pub fn queue_bindings(&self, plugin: &str) -> Result<Vec<String>> {
        self.read(|c| {
            c.prepare_cached("SELECT key FROM queue_bindings WHERE plugin = ?1 ORDER BY key")?
                .query_map(params![plugin], |r| r.get(0))?
                .collect()
        })
    }

    /// Records the binding keys a plugin's queue now has.
    pub fn set_queue_bindings(&self, plugin: &str, keys: &[String]) -> Result<()> {
        let mut conn = self.writer.lock().expect("store writer poisoned");
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM queue_bindings WHERE plugin = ?1",
            params![plugin],
        )?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO queue_bindings (plugin, key) VALUES (?1, ?2)",
            )?;
            for key in keys {
                insert.execute(params![plugin, key])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Binds an API Idempotency-Key to the body it first came with. True if
    /// the key is new or came with this body before; false if it came with
    /// another body.
    pub fn bind_idempotency_key(&self, key: &str, body_sha256: &str) -> Result<bool> {
        let conn = self.writer.lock().expect("store writer poisoned");
        conn.execute(
            "INSERT OR IGNORE INTO api_requests (idempotency_key, body_sha256, created_ms)
             VALUES (?1, ?2, ?3)",
            params![key, body_sha256, now_ms()],
        )?;
        let bound: String = conn.query_row(
            "SELECT body_sha256 FROM api_requests WHERE idempotency_key = ?1",
            params![key],
            |r| r.get(0),
        )?;
        Ok(bound == body_sha256)
    }

    /// Frees an Idempotency-Key whose request changed nothing.
    pub fn unbind_idempotency_key(&self, key: &str) -> Result<()> {
        let conn = self.writer.lock().expect("store writer poisoned");
        conn.execute(
            "DELETE FROM api_requests WHERE idempotency_key = ?1",
            params![key],
        )?;
        Ok(())
    }

    /// Forgets applied event ids, and the bodies of Idempotency-Keys, older
    /// than `retention`; returns how many event ids.
    pub fn prune_applied(&self, retention: Duration) -> Result<usize> {
        let cutoff =
            now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let conn = self.writer.lock().expect("store writer poisoned");
        conn.execute(
            "DELETE FROM api_requests WHERE created_ms < ?1",
            params![cutoff],
        )?;
        Ok(conn.execute(
            "DELETE FROM applied_events WHERE applied_ms < ?1",
            params![cutoff],
        )?)
    }
}

/// Brings a store written by an earlier Switchyard up to this schema.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has_hops: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('outbox') WHERE name = 'hops'",
        [],
        |r| r.get(0),
    )?;
    if !has_hops {
        conn.execute_batch("ALTER TABLE outbox ADD COLUMN hops INTEGER NOT NULL DEFAULT 0")?;
    }
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ids: &[&str]) -> BatchCommit {
        BatchCommit {
            plugin: "p".into(),
            version: "v1".into(),
            applied_event_ids: ids.iter().map(|s| s.to_string()).collect(),
            documents: vec![DocumentWrite::Upsert {
                collection: "c".into(),
                key: "k".into(),
                json: "{\"n\":1}".into(),
            }],
            state: vec![("s".into(), Some(vec![7]))],
            publish: vec![PublishWrite {
                routing_key: "x.y".into(),
                body: "{}".into(),
                hops: 2,
            }],
        }
    }

    #[test]
    fn a_batch_commits_documents_state_ids_and_outbox_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let outbox = store.commit_batch(&batch(&["e1", "e2"])).unwrap();
        assert_eq!(outbox.len(), 1);
        assert_eq!(
            store.document("c", "k").unwrap().as_deref(),
            Some("{\"n\":1}")
        );
        assert_eq!(store.state_get("p", "s").unwrap(), Some(vec![7]));
        let seen = store.applied_among("p", &["e1", "e3"]).unwrap();
        assert_eq!(seen, HashSet::from(["e1".to_string()]));
        assert_eq!(store.applied_by("p", "e2").unwrap().as_deref(), Some("v1"));
        assert_eq!(
            store.applied_by_version("p").unwrap(),
            vec![("v1".to_string(), 2)]
        );
        assert_eq!(outbox[0].hops, 2);
        assert_eq!(store.pending_outbox("p").unwrap(), outbox);
        store.outbox_done(&[outbox[0].seq]).unwrap();
        assert!(store.pending_outbox("p").unwrap().is_empty());
    }

    #[test]
    fn queue_bindings_are_remembered_per_plugin() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .set_queue_bindings("p", &["a.*".into(), "b.#".into()])
            .unwrap();
        store.set_queue_bindings("p", &["b.#".into()]).unwrap();
        store.set_queue_bindings("q", &["c".into()]).unwrap();
        assert_eq!(store.queue_bindings("p").unwrap(), vec!["b.#".to_string()]);
    }

    #[test]
    fn an_outbox_from_before_hop_counting_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        {
            let old = Connection::open(dir.path().join("switchyard.db")).unwrap();
            old.execute_batch(
                "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, plugin TEXT NOT NULL,
                 routing_key TEXT NOT NULL, body TEXT NOT NULL);
                 INSERT INTO outbox (plugin, routing_key, body) VALUES ('p', 'k', '{}');",
            )
            .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.pending_outbox("p").unwrap()[0].hops, 0);
        store.commit_batch(&batch(&["e1"])).unwrap();
        assert_eq!(store.pending_outbox("p").unwrap().len(), 2);
    }

    #[test]
    fn a_failed_batch_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.commit_batch(&batch(&["e1"])).unwrap();
        let mut again = batch(&["e2", "e1"]);
        again.documents = vec![DocumentWrite::Delete {
            collection: "c".into(),
            key: "k".into(),
        }];
        assert!(store.commit_batch(&again).is_err(), "e1 is applied twice");
        assert!(store.document("c", "k").unwrap().is_some());
        assert!(store.applied_among("p", &["e2"]).unwrap().is_empty());
        assert_eq!(store.pending_outbox("p").unwrap().len(), 1);
    }

    #[test]
    fn scan_pages_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut b = BatchCommit {
            plugin: "p".into(),
            ..Default::default()
        };
        for k in ["b", "a", "c"] {
            b.documents.push(DocumentWrite::Upsert {
                collection: "c".into(),
                key: k.into(),
                json: format!("\"{k}\""),
            });
        }
        store.commit_batch(&b).unwrap();
        let first = store.scan("c", None, 2).unwrap();
        let keys: Vec<_> = first.entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(first.next.as_deref(), Some("b"));
        let second = store.scan("c", first.next.as_deref(), 2).unwrap();
        assert_eq!(second.entries, vec![("c".to_string(), "\"c\"".to_string())]);
        assert_eq!(second.next, None);
    }

    #[test]
    fn state_survives_reopening_and_applied_ids_expire() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path())
            .unwrap()
            .commit_batch(&batch(&["e1"]))
            .unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.state_get("p", "s").unwrap(), Some(vec![7]));
        assert_eq!(store.applied_count("p").unwrap(), 1);
        assert_eq!(store.prune_applied(Duration::from_secs(3600)).unwrap(), 0);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(store.prune_applied(Duration::from_millis(1)).unwrap(), 1);
        assert_eq!(store.applied_count("p").unwrap(), 0);
        assert_eq!(
            store.state_get("p", "s").unwrap(),
            Some(vec![7]),
            "state is kept"
        );
    }

    #[test]
    fn an_idempotency_key_keeps_its_first_body_until_freed_or_expired() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.bind_idempotency_key("api/k", "aaa").unwrap());
        assert!(store.bind_idempotency_key("api/k", "aaa").unwrap());
        assert!(!store.bind_idempotency_key("api/k", "bbb").unwrap());
        store.unbind_idempotency_key("api/k").unwrap();
        assert!(store.bind_idempotency_key("api/k", "bbb").unwrap());
        std::thread::sleep(Duration::from_millis(5));
        store.prune_applied(Duration::from_millis(1)).unwrap();
        assert!(
            store.bind_idempotency_key("api/k", "ccc").unwrap(),
            "expired"
        );
    }
}
