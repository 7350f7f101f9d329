//! The PostgreSQL backend: the same tables as [`super::sqlite`] on a
//! database server that several hosts share.
//!
//! Why the sync `postgres` crate and a pool of our own: every store call
//! already runs on a blocking thread (the wasm `state` import during a
//! plugin call, the pipeline's batch worker, [`super::Store::call`]), and
//! the SQLite backend is synchronous too, so one blocking interface serves
//! both and one test suite runs over both. tokio-postgres with deadpool
//! would make the PostgreSQL calls async only for the wasm imports to
//! block on them again. The pool is a locked list of idle clients with a
//! cap: `r2d2` would add a dependency for those forty lines. A client that
//! failed with an outage is dropped, not returned, so the next call
//! connects afresh.
//!
//! Every connection gets a connect timeout, TCP keepalives, a TCP user
//! timeout and a statement timeout (unless the URL sets its own), so that
//! a host never hangs on a database that stopped answering: the call fails
//! with [`StoreError::Unavailable`] instead. The URL's password appears in
//! no message: only the redacted URL is ever shown.

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::{Client, NoTls, Row};

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
use crate::config::redact_url;

/// Longest wait for a connection to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one statement may run before the server cancels it.
const STATEMENT_TIMEOUT_MS: u64 = 30_000;
/// Idle time before TCP keepalive probes start, their interval and count:
/// a silent server is noticed within about half a minute.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;
/// Longest time data sent may stay unacknowledged before the connection
/// is dropped (Linux `TCP_USER_TIMEOUT`).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// Most connections one host opens.
const MAX_CONNECTIONS: usize = 16;
/// Longest wait for a free connection when all are busy.
const POOL_WAIT: Duration = Duration::from_secs(30);
/// Serialises schema migrations of hosts that start together.
const MIGRATION_LOCK: i64 = 0x5759_5443_4859_4152; // "SWYTCHYAR"

/// A PostgreSQL store.
pub struct Postgres {
    pool: Pool,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("url", &self.pool.shown)
            .finish()
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        classify(&e)
    }
}

/// Sorts a PostgreSQL error: a lost or refused connection, a refused
/// login, a full disk, a cancelled (timed out) statement, a server shutting
/// down or read only (a standby during failover), a missing database is an
/// outage; a duplicate key, a serialization failure or a deadlock is a
/// conflict.
fn classify(e: &postgres::Error) -> StoreError {
    let message = super::error::chain(e).replace('\n', " ");
    if e.is_closed() {
        return StoreError::Unavailable(message);
    }
    if let Some(code) = e.code() {
        let class = &code.code()[..2];
        return if matches!(class, "08" | "28" | "53" | "57" | "58")
            || *code == SqlState::READ_ONLY_SQL_TRANSACTION
            || *code == SqlState::INVALID_CATALOG_NAME
        {
            StoreError::Unavailable(message)
        } else if *code == SqlState::UNIQUE_VIOLATION
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
        {
            StoreError::Conflict(message)
        } else {
            StoreError::Other(message)
        };
    }
    // No answer from the server: the network or the socket failed.
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return StoreError::Unavailable(message);
        }
        source = cause.source();
    }
    if message.contains("timeout") || message.contains("timed out") {
        return StoreError::Unavailable(message);
    }
    StoreError::Other(message)
}

/// The connection settings of `url`, with the timeouts and keepalives
/// above where the URL sets none.
fn connect_config(url: &str) -> Result<postgres::Config, StoreError> {
    let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
        StoreError::Other(format!("invalid PostgreSQL URL {}: {e}", redact_url(url)))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.keepalives(true);
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(KEEPALIVE_IDLE);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(KEEPALIVE_INTERVAL);
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(KEEPALIVE_RETRIES);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    // Server notices ("relation already exists, skipping") are not news.
    config.notice_callback(|notice| {
        tracing::debug!(notice = %notice.message(), "PostgreSQL notice");
    });
    if config.get_application_name().is_none() {
        config.application_name("switchyard");
    }
    let options = config.get_options().unwrap_or_default().to_owned();
    if !options.contains("statement_timeout") {
        let timeout = format!("-c statement_timeout={STATEMENT_TIMEOUT_MS}");
        config.options(format!("{options} {timeout}").trim());
    }
    Ok(config)
}

/// Idle clients and how many are open.
struct PoolState {
    idle: Vec<Client>,
    open: usize,
}

/// Up to [`MAX_CONNECTIONS`] clients, opened on demand.
struct Pool {
    config: postgres::Config,
    /// The URL, password redacted, for messages.
    shown: String,
    state: Mutex<PoolState>,
    freed: Condvar,
}

/// A client taken from the pool; back in it when dropped, unless it broke.
struct Pooled<'a> {
    pool: &'a Pool,
    client: Option<Client>,
    broken: bool,
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.pool.state);
        match self.client.take() {
            // A panic mid-call leaves `broken` unset but the client is only
            // put back when it finished its transaction (see `Pool::with`).
            Some(client) if !self.broken && !client.is_closed() && !std::thread::panicking() => {
                state.idle.push(client)
            }
            _ => state.open -= 1,
        }
        drop(state);
        self.pool.freed.notify_one();
    }
}

impl Drop for Pool {
    /// Closing a client blocks on its own runtime, which panics on an async
    /// thread (where the last handle on the store may well be dropped): the
    /// idle clients are closed on a thread of their own.
    fn drop(&mut self) {
        let idle = std::mem::take(&mut lock(&self.state).idle);
        if !idle.is_empty() {
            let closing = std::thread::Builder::new()
                .name("switchyard-pg-close".into())
                .spawn(move || drop(idle));
            if let Err(e) = closing {
                tracing::warn!(error = %e, "cannot close PostgreSQL connections cleanly");
            }
        }
    }
}

impl Pool {
    fn take(&self) -> Result<Pooled<'_>, StoreError> {
        let deadline = Instant::now() + POOL_WAIT;
        let mut state = lock(&self.state);
        loop {
            if let Some(client) = state.idle.pop() {
                // One that died idle (keepalives gave it up) is not handed
                // out to wait on it.
                if client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(Pooled {
                    pool: self,
                    client: Some(client),
                    broken: false,
                });
            }
            if state.open < MAX_CONNECTIONS {
                state.open += 1;
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::Unavailable(format!(
                    "all {MAX_CONNECTIONS} connections to {} stayed busy for {POOL_WAIT:?}",
                    self.shown
                )));
            }
            state = self
                .freed
                .wait_timeout(state, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        drop(state);
        // Counted as open before connecting: a failure gives the slot back.
        let mut pooled = Pooled {
            pool: self,
            client: None,
            broken: true,
        };
        let client = self.config.connect(NoTls).map_err(|e| {
            // Whatever failed while connecting (refused, timed out, login
            // refused, no such database) is an outage to wait out.
            StoreError::Unavailable(format!(
                "connecting to PostgreSQL at {}: {}",
                self.shown,
                super::error::chain(&e).replace('\n', " ")
            ))
        })?;
        pooled.client = Some(client);
        pooled.broken = false;
        Ok(pooled)
    }

    /// Runs `f` with a client; one that fails with an outage is dropped.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut pooled = self.take()?;
        let client = pooled.client.as_mut().ok_or_else(|| {
            StoreError::Other("a pooled PostgreSQL connection went missing".into())
        })?;
        let result = f(client);
        if let Err(e) = &result {
            pooled.broken = e.is_outage();
        }
        result
    }
}

impl Postgres {
    /// Connects to the database at `url` and brings its schema up to date.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let shown = redact_url(url);
        let pool = Pool {
            config: connect_config(url)?,
            shown: shown.clone(),
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        };
        pool.with(migrate)
            .doing(&format!("upgrading the schema of {shown}"))?;
        Ok(Self { pool })
    }

    /// Runs `f` with a pooled client (tests look at its session).
    #[cfg(test)]
    pub(crate) fn with_client<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.pool.with(f)
    }
}

/// The connection settings the store uses for `url` (tests check them).
#[cfg(test)]
pub(crate) fn tests_config(url: &str) -> postgres::Config {
    connect_config(url).expect("a valid URL")
}

/// Brings the database to the latest schema version
/// (`migrations::POSTGRES`) in one transaction; hosts starting together
/// take turns.
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute(
        &format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"),
        &[],
    )?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_ms BIGINT NOT NULL
         )",
    )?;
    let found: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])?
        .get(0);
    for step in migrations::pending(migrations::POSTGRES, found.max(0) as u32)? {
        tx.batch_execute(step.sql)
            .doing(&format!("schema step {} ({})", step.version, step.name))?;
        tx.execute(
            "INSERT INTO schema_version (version, name, applied_ms) VALUES ($1, $2, $3)",
            &[&(step.version as i32), &step.name, &now_ms()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

impl Documents for Postgres {
    fn document(&self, collection: &str, key: &str) -> Result<Option<String>, StoreError> {
        self.pool.with(|c| {
            let row = c.query_opt(
                "SELECT json FROM documents WHERE collection = $1 AND key = $2",
                &[&collection, &key],
            )?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn scan(&self, collection: &str, after: Option<&str>, limit: u32) -> Result<Page, StoreError> {
        let entries = self.pool.with(|c| {
            let rows = c.query(
                "SELECT key, json FROM documents WHERE collection = $1 AND key > $2
                 ORDER BY key LIMIT $3",
                &[&collection, &after.unwrap_or(""), &i64::from(limit)],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })?;
        Ok(Page::of(entries, limit))
    }

    fn collections(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.pool.with(|c| {
            // COLLATE "C": byte order, as the keys are listed.
            let rows = c.query(
                "SELECT collection, COUNT(*) FROM documents
                 GROUP BY collection ORDER BY collection COLLATE \"C\"",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64))
                .collect())
        })
    }
}

impl PluginState for Postgres {
    fn state_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.pool.with(|c| {
            let row = c.query_opt(
                "SELECT value FROM plugin_state WHERE plugin = $1 AND key = $2",
                &[&plugin, &key],
            )?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn state_generation(&self, plugin: &str) -> Result<u64, StoreError> {
        self.pool.with(|c| {
            let row = c.query_opt(
                "SELECT generation FROM plugin_generations WHERE plugin = $1",
                &[&plugin],
            )?;
            Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
        })
    }
}

/// The store's clock in SQL: the server's, in milliseconds.
const CLOCK_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

impl Cluster for Postgres {
    fn heartbeat(&self, id: &str, started_ms: i64, info: &str) -> Result<(), StoreError> {
        self.pool
            .with(|c| {
                c.execute(
                    &format!(
                        "INSERT INTO hosts (id, started_ms, last_seen_ms, info) VALUES ($1, $2, {CLOCK_MS}, $3)
                         ON CONFLICT (id) DO UPDATE SET started_ms = excluded.started_ms,
                         last_seen_ms = excluded.last_seen_ms, info = excluded.info"
                    ),
                    &[&id, &started_ms, &info],
                )?;
                Ok(())
            })
            .doing("recording the host's heartbeat")
    }

    fn hosts(&self, since_ms: i64) -> Result<Vec<HostRecord>, StoreError> {
        self.pool.with(|c| {
            let rows = c.query(
                "SELECT id, started_ms, last_seen_ms, info FROM hosts WHERE last_seen_ms >= $1
                 ORDER BY last_seen_ms DESC, id",
                &[&since_ms],
            )?;
            Ok(rows
                .iter()
                .map(|r| HostRecord {
                    id: r.get(0),
                    started_ms: r.get(1),
                    last_seen_ms: r.get(2),
                    info: r.get(3),
                })
                .collect())
        })
    }

    fn forget_hosts(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.pool.with(|c| {
            Ok(c.execute("DELETE FROM hosts WHERE last_seen_ms < $1", &[&before_ms])? as usize)
        })
    }

    fn take_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<String, StoreError> {
        self.pool
            .with(|c| {
                let taken = c.query_opt(
                    &format!(
                        "INSERT INTO leases (name, holder, expires_ms) VALUES ($1, $2, {CLOCK_MS} + $3)
                         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                         expires_ms = excluded.expires_ms
                         WHERE leases.holder = excluded.holder OR leases.expires_ms < {CLOCK_MS}
                         RETURNING holder"
                    ),
                    &[&name, &holder, &ttl_ms],
                )?;
                if let Some(row) = taken {
                    return Ok(row.get(0));
                }
                let row = c.query_one("SELECT holder FROM leases WHERE name = $1", &[&name])?;
                Ok(row.get(0))
            })
            .doing("taking a lease")
    }

    fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.pool.with(|c| {
            c.execute(
                "DELETE FROM leases WHERE name = $1 AND holder = $2",
                &[&name, &holder],
            )?;
            Ok(())
        })
    }

    fn clock_ms(&self) -> Result<i64, StoreError> {
        self.pool
            .with(|c| Ok(c.query_one(&format!("SELECT {CLOCK_MS}"), &[])?.get(0)))
    }
}

fn count(row: &Row) -> u64 {
    row.get::<_, i64>(0).max(0) as u64
}

impl Dedupe for Postgres {
    fn applied_among(&self, plugin: &str, ids: &[&str]) -> Result<HashSet<String>, StoreError> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        self.pool.with(|c| {
            let rows = c.query(
                "SELECT event_id FROM applied_events WHERE plugin = $1 AND event_id = ANY($2)",
                &[&plugin, &ids],
            )?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn applied_by(&self, plugin: &str, event_id: &str) -> Result<Option<String>, StoreError> {
        self.pool.with(|c| {
            let row = c.query_opt(
                "SELECT version FROM applied_events WHERE plugin = $1 AND event_id = $2",
                &[&plugin, &event_id],
            )?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn applied_count(&self, plugin: &str) -> Result<u64, StoreError> {
        self.pool.with(|c| {
            let row = c.query_one(
                "SELECT COUNT(*) FROM applied_events WHERE plugin = $1",
                &[&plugin],
            )?;
            Ok(count(&row))
        })
    }

    fn applied_by_version(&self, plugin: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.pool.with(|c| {
            let rows = c.query(
                "SELECT version, COUNT(*) AS n FROM applied_events WHERE plugin = $1
                 GROUP BY version ORDER BY n DESC, version COLLATE \"C\"",
                &[&plugin],
            )?;
            Ok(rows
                .iter()
                .map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64))
                .collect())
        })
    }

    fn bind_idempotency_key(&self, key: &str, body_sha256: &str) -> Result<bool, StoreError> {
        self.pool
            .with(|c| {
                let mut tx = c.transaction()?;
                tx.execute(
                    "INSERT INTO api_requests (idempotency_key, body_sha256, created_ms)
                     VALUES ($1, $2, $3) ON CONFLICT (idempotency_key) DO NOTHING",
                    &[&key, &body_sha256, &now_ms()],
                )?;
                let bound: String = tx
                    .query_one(
                        "SELECT body_sha256 FROM api_requests WHERE idempotency_key = $1",
                        &[&key],
                    )?
                    .get(0);
                tx.commit()?;
                Ok(bound == body_sha256)
            })
            .doing("binding an Idempotency-Key")
    }

    fn unbind_idempotency_key(&self, key: &str) -> Result<(), StoreError> {
        self.pool
            .with(|c| {
                c.execute(
                    "DELETE FROM api_requests WHERE idempotency_key = $1",
                    &[&key],
                )?;
                Ok(())
            })
            .doing("freeing an Idempotency-Key")
    }

    fn prune_applied(&self, retention: Duration) -> Result<usize, StoreError> {
        let cutoff = super::dedupe::cutoff_ms(retention);
        self.pool
            .with(|c| {
                let mut tx = c.transaction()?;
                tx.execute("DELETE FROM api_requests WHERE created_ms < $1", &[&cutoff])?;
                tx.execute(
                    "DELETE FROM published_events WHERE committed_ms < $1",
                    &[&cutoff],
                )?;
                let pruned = tx.execute(
                    "DELETE FROM applied_events WHERE applied_ms < $1",
                    &[&cutoff],
                )?;
                tx.commit()?;
                Ok(pruned as usize)
            })
            .doing("pruning applied event ids")
    }
}

/// A batch's document writes reduced to the last one per key (writes to
/// different keys commute), as upserts and deletes.
type Upserts<'a> = (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>);

fn final_documents(writes: &[DocumentWrite]) -> (Upserts<'_>, (Vec<&str>, Vec<&str>)) {
    let mut last: HashMap<(&str, &str), Option<&str>> = HashMap::new();
    let mut order = Vec::new();
    for write in writes {
        let (id, json) = match write {
            DocumentWrite::Upsert {
                collection,
                key,
                json,
            } => ((collection.as_str(), key.as_str()), Some(json.as_str())),
            DocumentWrite::Delete { collection, key } => {
                ((collection.as_str(), key.as_str()), None)
            }
        };
        if last.insert(id, json).is_none() {
            order.push(id);
        }
    }
    let (mut upserts, mut deletes) = ((vec![], vec![], vec![]), (vec![], vec![]));
    for id in order {
        match last[&id] {
            Some(json) => {
                upserts.0.push(id.0);
                upserts.1.push(id.1);
                upserts.2.push(json);
            }
            None => {
                deletes.0.push(id.0);
                deletes.1.push(id.1);
            }
        }
    }
    (upserts, deletes)
}

impl Batches for Postgres {
    fn commit_batch(&self, batch: &BatchCommit) -> Result<Vec<OutboxEntry>, StoreError> {
        let now = now_ms();
        let ((collections, keys, jsons), (gone_collections, gone_keys)) =
            final_documents(&batch.documents);
        let mut state: HashMap<&str, Option<&[u8]>> = HashMap::new();
        for (key, value) in &batch.state {
            state.insert(key, value.as_deref());
        }
        let (set_keys, set_values): (Vec<&str>, Vec<&[u8]>) =
            state.iter().filter_map(|(k, v)| v.map(|v| (*k, v))).unzip();
        let unset_keys: Vec<&str> = state
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| *k)
            .collect();
        let ids: Vec<&str> = batch.applied_event_ids.iter().map(String::as_str).collect();
        let routing_keys: Vec<&str> = batch
            .publish
            .iter()
            .map(|e| e.routing_key.as_str())
            .collect();
        let bodies: Vec<&str> = batch.publish.iter().map(|e| e.body.as_str()).collect();
        let hops: Vec<i32> = batch
            .publish
            .iter()
            .map(|e| i32::try_from(e.hops).unwrap_or(i32::MAX))
            .collect();
        self.pool
            .with(|c| {
                let mut tx = c.transaction()?;
                if let Some(generation) = batch.state_generation {
                    let moved = tx.query_opt(
                        "INSERT INTO plugin_generations (plugin, generation) VALUES ($1, 1)
                         ON CONFLICT (plugin) DO UPDATE
                         SET generation = plugin_generations.generation + 1
                         WHERE plugin_generations.generation = $2
                         RETURNING generation",
                        &[&batch.plugin, &(generation as i64)],
                    )?;
                    if moved.map(|r| r.get::<_, i64>(0)) != Some(generation as i64 + 1) {
                        return Err(StoreError::Conflict(format!(
                            "the state of {:?} moved on since generation {generation}",
                            batch.plugin
                        )));
                    }
                }
                if !keys.is_empty() {
                    tx.execute(
                        "INSERT INTO documents (collection, key, json, updated_ms)
                         SELECT c, k, j, $4 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t (c, k, j)
                         ON CONFLICT (collection, key)
                         DO UPDATE SET json = excluded.json, updated_ms = excluded.updated_ms",
                        &[&collections, &keys, &jsons, &now],
                    )?;
                }
                if !gone_keys.is_empty() {
                    tx.execute(
                        "DELETE FROM documents d USING UNNEST($1::text[], $2::text[]) AS t (c, k)
                         WHERE d.collection = t.c AND d.key = t.k",
                        &[&gone_collections, &gone_keys],
                    )?;
                }
                if !set_keys.is_empty() {
                    tx.execute(
                        "INSERT INTO plugin_state (plugin, key, value)
                         SELECT $1, k, v FROM UNNEST($2::text[], $3::bytea[]) AS t (k, v)
                         ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value",
                        &[&batch.plugin, &set_keys, &set_values],
                    )?;
                }
                if !unset_keys.is_empty() {
                    tx.execute(
                        "DELETE FROM plugin_state WHERE plugin = $1 AND key = ANY($2)",
                        &[&batch.plugin, &unset_keys],
                    )?;
                }
                if !ids.is_empty() {
                    // One statement, one round trip: the file's declared
                    // version (once per file) with the applied ids.
                    tx.execute(
                        "WITH v AS (
                             INSERT INTO plugin_versions (plugin, sha256, version, first_applied_ms)
                             VALUES ($1, $2, $5, $3) ON CONFLICT DO NOTHING
                         )
                         INSERT INTO applied_events (plugin, event_id, version, applied_ms)
                         SELECT $1, id, $2, $3 FROM UNNEST($4::text[]) AS t (id)",
                        &[&batch.plugin, &batch.version, &now, &ids, &batch.declared_version],
                    )
                    .doing("recording the batch's event ids as applied")?;
                }
                let caused: Vec<_> = batch
                    .publish
                    .iter()
                    .filter_map(|e| e.cause.as_ref().map(|c| (c, e.routing_key.as_str())))
                    .collect();
                if !caused.is_empty() {
                    tx.execute(
                        "INSERT INTO published_events
                         (source_event_id, plugin, n, event_id, routing_key, committed_ms)
                         SELECT s, $1, n, e, r, $2
                         FROM UNNEST($3::text[], $4::int4[], $5::text[], $6::text[]) AS t (s, n, e, r)",
                        &[
                            &batch.plugin,
                            &now,
                            &caused.iter().map(|(c, _)| c.event_id.as_str()).collect::<Vec<_>>(),
                            &caused
                                .iter()
                                .map(|(c, _)| i32::try_from(c.n).unwrap_or(i32::MAX))
                                .collect::<Vec<_>>(),
                            &caused.iter().map(|(c, _)| c.published_id.as_str()).collect::<Vec<_>>(),
                            &caused.iter().map(|(_, r)| *r).collect::<Vec<_>>(),
                        ],
                    )?;
                }
                let mut outbox = Vec::with_capacity(bodies.len());
                if !bodies.is_empty() {
                    let rows = tx.query(
                        "INSERT INTO outbox (plugin, routing_key, body, hops)
                         SELECT $1, r, b, h
                         FROM UNNEST($2::text[], $3::text[], $4::int4[]) WITH ORDINALITY AS t (r, b, h, n)
                         ORDER BY n
                         RETURNING seq, plugin, routing_key, body, hops",
                        &[&batch.plugin, &routing_keys, &bodies, &hops],
                    )?;
                    outbox.extend(rows.iter().map(outbox_entry));
                    // Sequence numbers follow the insertion order.
                    outbox.sort_by_key(|e| e.seq);
                }
                tx.commit()?;
                Ok(outbox)
            })
            .doing("committing a batch")
    }
}

fn outbox_entry(r: &Row) -> OutboxEntry {
    OutboxEntry {
        seq: r.get(0),
        plugin: r.get(1),
        routing_key: r.get(2),
        body: r.get(3),
        hops: r.get::<_, i32>(4).max(0) as u32,
    }
}

fn dead_letter(r: &Row) -> StoredDeadLetter {
    StoredDeadLetter {
        seq: r.get(0),
        plugin: r.get(1),
        routing_key: r.get(2),
        body: r.get(3),
        reason: r.get(4),
        version: r.get(5),
        failed_ms: r.get(6),
    }
}

impl Outbox for Postgres {
    fn pending_outbox(&self, plugin: &str) -> Result<Vec<OutboxEntry>, StoreError> {
        self.pool.with(|c| {
            let rows = c.query(
                "SELECT seq, plugin, routing_key, body, hops FROM outbox WHERE plugin = $1 ORDER BY seq",
                &[&plugin],
            )?;
            Ok(rows.iter().map(outbox_entry).collect())
        })
    }

    fn outbox_done(&self, seqs: &[i64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.pool
            .with(|c| {
                c.execute("DELETE FROM outbox WHERE seq = ANY($1)", &[&seqs])?;
                Ok(())
            })
            .doing("clearing the outbox")
    }
}

impl DeadLetters for Postgres {
    fn add_dead_letters(&self, letters: &[StoredDeadLetter]) -> Result<(), StoreError> {
        self.pool
            .with(|c| {
                let mut tx = c.transaction()?;
                let insert = tx.prepare(
                    "INSERT INTO dead_letters (plugin, routing_key, body, reason, version, failed_ms, event_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )?;
                for l in letters {
                    tx.execute(
                        &insert,
                        &[
                            &l.plugin,
                            &l.routing_key,
                            &l.body,
                            &l.reason,
                            &l.version,
                            &l.failed_ms,
                            &indexed_event_id(&l.body),
                        ],
                    )?;
                }
                tx.commit()?;
                Ok(())
            })
            .doing("keeping dead letters")
    }

    fn dead_letters(
        &self,
        plugin: &str,
        limit: u32,
    ) -> Result<(Vec<StoredDeadLetter>, u64), StoreError> {
        self.pool.with(|c| {
            let mut tx = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let total = count(&tx.query_one(
                "SELECT COUNT(*) FROM dead_letters WHERE plugin = $1",
                &[&plugin],
            )?);
            let letters = tx
                .query(
                    "SELECT seq, plugin, routing_key, body, reason, version, failed_ms
                     FROM dead_letters WHERE plugin = $1 ORDER BY seq LIMIT $2",
                    &[&plugin, &i64::from(limit)],
                )?
                .iter()
                .map(dead_letter)
                .collect();
            tx.commit()?;
            Ok((letters, total))
        })
    }

    fn remove_dead_letters(&self, seqs: &[i64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.pool
            .with(|c| {
                c.execute("DELETE FROM dead_letters WHERE seq = ANY($1)", &[&seqs])?;
                Ok(())
            })
            .doing("forgetting dead letters")
    }
}

impl QueueBindings for Postgres {
    fn queue_bindings(&self, plugin: &str) -> Result<Vec<String>, StoreError> {
        self.pool.with(|c| {
            let rows = c.query(
                "SELECT key FROM queue_bindings WHERE plugin = $1 ORDER BY key",
                &[&plugin],
            )?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn set_queue_bindings(&self, plugin: &str, keys: &[String]) -> Result<(), StoreError> {
        self.pool
            .with(|c| {
                let mut tx = c.transaction()?;
                tx.execute("DELETE FROM queue_bindings WHERE plugin = $1", &[&plugin])?;
                tx.execute(
                    "INSERT INTO queue_bindings (plugin, key)
                     SELECT $1, k FROM UNNEST($2::text[]) AS t (k) ON CONFLICT DO NOTHING",
                    &[&plugin, &keys],
                )?;
                tx.commit()?;
                Ok(())
            })
            .doing("recording queue bindings")
    }
}

impl Journeys for Postgres {
    fn event_records(
        &self,
        event_id: &str,
        plugins: &[String],
    ) -> Result<EventRecords, StoreError> {
        self.pool.with(|c| {
            // Applied ids are keyed by plugin first: one index probe per
            // plugin known here or recorded.
            let applied = c
                .query(
                    "SELECT a.plugin, a.version, v.version, a.applied_ms FROM applied_events a
                     LEFT JOIN plugin_versions v ON v.plugin = a.plugin AND v.sha256 = a.version
                     WHERE a.plugin = ANY(ARRAY(
                         SELECT DISTINCT plugin FROM plugin_versions
                         UNION SELECT UNNEST($2::text[])
                     )) AND a.event_id = $1
                     ORDER BY a.plugin",
                    &[&event_id, &plugins],
                )?
                .iter()
                .map(|r| AppliedRecord {
                    plugin: r.get(0),
                    sha256: r.get(1),
                    version: r.get(2),
                    applied_ms: r.get(3),
                })
                .collect();
            let published = c
                .query(
                    "SELECT plugin, n, event_id, routing_key, committed_ms FROM published_events
                     WHERE source_event_id = $1 ORDER BY plugin, n",
                    &[&event_id],
                )?
                .iter()
                .map(|r| PublishedRecord {
                    plugin: r.get(0),
                    n: r.get::<_, i32>(1).max(0) as u32,
                    event_id: r.get(2),
                    routing_key: r.get(3),
                    committed_ms: r.get(4),
                })
                .collect();
            let dead_letters = c
                .query(
                    "SELECT seq, plugin, routing_key, body, reason, version, failed_ms
                     FROM dead_letters WHERE event_id = $1 ORDER BY seq",
                    &[&event_id],
                )?
                .iter()
                .map(dead_letter)
                .collect();
            Ok(EventRecords {
                applied,
                published,
                dead_letters,
            })
        })
    }

    fn declared_version(&self, plugin: &str, sha256: &str) -> Result<Option<String>, StoreError> {
        self.pool.with(|c| {
            Ok(c.query_opt(
                "SELECT version FROM plugin_versions WHERE plugin = $1 AND sha256 = $2",
                &[&plugin, &sha256],
            )?
            .map(|r| r.get(0)))
        })
    }
}

/// Every table a copy moves.
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

fn holds_rows(tx: &mut postgres::Transaction<'_>) -> Result<Option<&'static str>, StoreError> {
    for table in TABLES {
        let any: bool = tx
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])?
            .get(0);
        if any {
            return Ok(Some(*table));
        }
    }
    Ok(None)
}

/// Streams `sql`'s rows to `each` in chunks of [`CHUNK`] through a portal.
fn export_table(
    tx: &mut postgres::Transaction<'_>,
    sql: &str,
    wrap: impl Fn(&[Row]) -> Rows,
    each: &mut Sink<'_>,
) -> Result<(), StoreError> {
    let portal = tx.bind(sql, &[])?;
    loop {
        let rows = tx.query_portal(&portal, CHUNK as i32)?;
        if rows.is_empty() {
            return Ok(());
        }
        each(wrap(&rows))?;
        if rows.len() < CHUNK {
            return Ok(());
        }
    }
}

impl Transfer for Postgres {
    fn is_empty(&self) -> Result<bool, StoreError> {
        self.pool.with(|c| {
            let mut tx = c.transaction()?;
            let holds = holds_rows(&mut tx)?;
            tx.commit()?;
            Ok(holds.is_none())
        })
    }

    fn export(&self, each: &mut Sink<'_>) -> Result<(), StoreError> {
        self.pool.with(|c| {
            let mut tx = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            export_table(
                &mut tx,
                "SELECT collection, key, json, updated_ms FROM documents ORDER BY collection, key",
                |rows| {
                    Rows::Documents(
                        rows.iter()
                            .map(|r| DocumentRow {
                                collection: r.get(0),
                                key: r.get(1),
                                json: r.get(2),
                                updated_ms: r.get(3),
                            })
                            .collect(),
                    )
                },
                each,
            )?;
            export_table(
                &mut tx,
                "SELECT plugin, key, value FROM plugin_state ORDER BY plugin, key",
                |rows| {
                    Rows::State(
                        rows.iter()
                            .map(|r| StateRow {
                                plugin: r.get(0),
                                key: r.get(1),
                                value: r.get(2),
                            })
                            .collect(),
                    )
                },
                each,
            )?;
            export_table(
                &mut tx,
                "SELECT plugin, event_id, version, applied_ms FROM applied_events ORDER BY plugin, event_id",
                |rows| {
                    Rows::Applied(
                        rows.iter()
                            .map(|r| AppliedRow {
                                plugin: r.get(0),
                                event_id: r.get(1),
                                version: r.get(2),
                                applied_ms: r.get(3),
                            })
                            .collect(),
                    )
                },
                each,
            )?;
            export_table(
                &mut tx,
                "SELECT seq, plugin, routing_key, body, hops FROM outbox ORDER BY seq",
                |rows| Rows::Outbox(rows.iter().map(outbox_entry).collect()),
                each,
            )?;
            export_table(
                &mut tx,
                "SELECT idempotency_key, body_sha256, created_ms FROM api_requests ORDER BY idempotency_key",
                |rows| {
                    Rows::IdempotencyKeys(
                        rows.iter()
                            .map(|r| IdempotencyRow {
                                key: r.get(0),
                                body_sha256: r.get(1),
                                created_ms: r.get(2),
                            })
                            .collect(),
                    )
                },
                each,
            )?;
            export_table(
                &mut tx,
                "SELECT seq, plugin, routing_key, body, reason, version, failed_ms FROM dead_letters ORDER BY seq",
                |rows| Rows::DeadLetters(rows.iter().map(dead_letter).collect()),
                each,
            )?;
            export_table(
                &mut tx,
                "SELECT plugin, key FROM queue_bindings ORDER BY plugin, key",
                |rows| {
                    Rows::QueueBindings(
                        rows.iter()
                            .map(|r| BindingRow {
                                plugin: r.get(0),
                                key: r.get(1),
                            })
                            .collect(),
                    )
                },
                each,
            )?;
            export_table(
                &mut tx,
                "SELECT plugin, sha256, version, first_applied_ms FROM plugin_versions ORDER BY plugin, sha256",
                |rows| {
                    Rows::PluginVersions(
                        rows.iter()
                            .map(|r| PluginVersionRow {
                                plugin: r.get(0),
                                sha256: r.get(1),
                                version: r.get(2),
                                first_applied_ms: r.get(3),
                            })
                            .collect(),
                    )
                },
                each,
            )?;
            export_table(
                &mut tx,
                "SELECT source_event_id, plugin, n, event_id, routing_key, committed_ms
                 FROM published_events ORDER BY source_event_id, plugin, n",
                |rows| {
                    Rows::Published(
                        rows.iter()
                            .map(|r| PublishedRow {
                                source_event_id: r.get(0),
                                plugin: r.get(1),
                                n: r.get::<_, i32>(2).max(0) as u32,
                                event_id: r.get(3),
                                routing_key: r.get(4),
                                committed_ms: r.get(5),
                            })
                            .collect(),
                    )
                },
                each,
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn import(
        &self,
        fill: &mut dyn FnMut(&mut Sink<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.pool.with(|c| {
            let mut tx = c.transaction()?;
            // No host writes while the copy runs, and none started before.
            tx.batch_execute(&format!(
                "LOCK TABLE {} IN EXCLUSIVE MODE",
                TABLES.join(", ")
            ))?;
            if let Some(table) = holds_rows(&mut tx)? {
                return Err(StoreError::Other(format!(
                    "the target store is not empty (its {table} table holds rows)"
                )));
            }
            fill(&mut |rows| import_rows(&mut tx, rows))?;
            // Numbers assigned from now on follow the copied ones.
            for table in ["outbox", "dead_letters"] {
                tx.execute(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', 'seq'), m)
                         FROM (SELECT MAX(seq) AS m FROM {table}) AS t WHERE m IS NOT NULL"
                    ),
                    &[],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }
}

fn import_rows(tx: &mut postgres::Transaction<'_>, rows: Rows) -> Result<(), StoreError> {
    fn column<'a, T, U>(rows: &'a [T], f: impl Fn(&'a T) -> U) -> Vec<U> {
        rows.iter().map(f).collect()
    }
    match rows {
        Rows::Documents(r) => tx.execute(
            "INSERT INTO documents (collection, key, json, updated_ms)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[])",
            &[
                &column(&r, |r| r.collection.as_str()),
                &column(&r, |r| r.key.as_str()),
                &column(&r, |r| r.json.as_str()),
                &column(&r, |r| r.updated_ms),
            ],
        )?,
        Rows::State(r) => tx.execute(
            "INSERT INTO plugin_state (plugin, key, value)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bytea[])",
            &[
                &column(&r, |r| r.plugin.as_str()),
                &column(&r, |r| r.key.as_str()),
                &column(&r, |r| r.value.as_slice()),
            ],
        )?,
        Rows::Applied(r) => tx.execute(
            "INSERT INTO applied_events (plugin, event_id, version, applied_ms)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[])",
            &[
                &column(&r, |r| r.plugin.as_str()),
                &column(&r, |r| r.event_id.as_str()),
                &column(&r, |r| r.version.as_str()),
                &column(&r, |r| r.applied_ms),
            ],
        )?,
        Rows::Outbox(r) => tx.execute(
            "INSERT INTO outbox (seq, plugin, routing_key, body, hops)
             SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::int4[])",
            &[
                &column(&r, |r| r.seq),
                &column(&r, |r| r.plugin.as_str()),
                &column(&r, |r| r.routing_key.as_str()),
                &column(&r, |r| r.body.as_str()),
                &column(&r, |r| i32::try_from(r.hops).unwrap_or(i32::MAX)),
            ],
        )?,
        Rows::IdempotencyKeys(r) => tx.execute(
            "INSERT INTO api_requests (idempotency_key, body_sha256, created_ms)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[])",
            &[
                &column(&r, |r| r.key.as_str()),
                &column(&r, |r| r.body_sha256.as_str()),
                &column(&r, |r| r.created_ms),
            ],
        )?,
        Rows::DeadLetters(r) => tx.execute(
            "INSERT INTO dead_letters (seq, plugin, routing_key, body, reason, version, failed_ms, event_id)
             SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::text[], $7::int8[], $8::text[])",
            &[
                &column(&r, |r| r.seq),
                &column(&r, |r| r.plugin.as_str()),
                &column(&r, |r| r.routing_key.as_str()),
                &column(&r, |r| r.body.as_slice()),
                &column(&r, |r| r.reason.as_str()),
                &column(&r, |r| r.version.as_str()),
                &column(&r, |r| r.failed_ms),
                &column(&r, |r| indexed_event_id(&r.body)),
            ],
        )?,
        Rows::PluginVersions(r) => tx.execute(
            "INSERT INTO plugin_versions (plugin, sha256, version, first_applied_ms)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[])",
            &[
                &column(&r, |r| r.plugin.as_str()),
                &column(&r, |r| r.sha256.as_str()),
                &column(&r, |r| r.version.as_str()),
                &column(&r, |r| r.first_applied_ms),
            ],
        )?,
        Rows::Published(r) => tx.execute(
            "INSERT INTO published_events
             (source_event_id, plugin, n, event_id, routing_key, committed_ms)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::text[], $5::text[], $6::int8[])",
            &[
                &column(&r, |r| r.source_event_id.as_str()),
                &column(&r, |r| r.plugin.as_str()),
                &column(&r, |r| i32::try_from(r.n).unwrap_or(i32::MAX)),
                &column(&r, |r| r.event_id.as_str()),
                &column(&r, |r| r.routing_key.as_str()),
                &column(&r, |r| r.committed_ms),
            ],
        )?,
        Rows::QueueBindings(r) => tx.execute(
            "INSERT INTO queue_bindings (plugin, key) SELECT * FROM UNNEST($1::text[], $2::text[])",
            &[
                &column(&r, |r| r.plugin.as_str()),
                &column(&r, |r| r.key.as_str()),
            ],
        )?,
    };
    Ok(())
}
