-- Switchyard store, SQLite, version 1: the schema of the store before
-- versions were recorded. `IF NOT EXISTS` everywhere, so that this also
-- completes a store written by an earlier Switchyard (see
-- `store::sqlite::adopt_unversioned`).
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
