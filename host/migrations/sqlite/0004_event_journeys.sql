-- Switchyard store, SQLite, version 4: what `GET /events/{eventId}` reads.
-- The version each plugin file (by sha256) declares, recorded by the first
-- batch it commits: applied ids keep only the sha256.
CREATE TABLE plugin_versions (
    plugin           TEXT NOT NULL,
    sha256           TEXT NOT NULL,
    version          TEXT NOT NULL,
    first_applied_ms INTEGER NOT NULL,
    PRIMARY KEY (plugin, sha256)
) WITHOUT ROWID;
-- The events a plugin published because of an event (its `n`th publish for
-- it), committed with the batch; pruned with the applied ids.
CREATE TABLE published_events (
    source_event_id TEXT NOT NULL,
    plugin          TEXT NOT NULL,
    n               INTEGER NOT NULL,
    event_id        TEXT NOT NULL,
    routing_key     TEXT NOT NULL,
    committed_ms    INTEGER NOT NULL,
    PRIMARY KEY (source_event_id, plugin, n)
) WITHOUT ROWID;
CREATE INDEX published_events_by_time ON published_events (committed_ms);
-- The embedded bus's dead letters, found by the eventId of their body
-- (NULL for a body without one, and for dead letters kept before this
-- version).
ALTER TABLE dead_letters ADD COLUMN event_id TEXT;
CREATE INDEX dead_letters_by_event ON dead_letters (event_id);
