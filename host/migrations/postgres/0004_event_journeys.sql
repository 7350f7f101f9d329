-- Switchyard store, PostgreSQL, version 4: what `GET /events/{eventId}`
-- reads. The version each plugin file (by sha256) declares, recorded by the
-- first batch it commits: applied ids keep only the sha256.
CREATE TABLE plugin_versions (
    plugin           TEXT COLLATE "C" NOT NULL,
    sha256           TEXT COLLATE "C" NOT NULL,
    version          TEXT NOT NULL,
    first_applied_ms BIGINT NOT NULL,
    PRIMARY KEY (plugin, sha256)
);
-- The events a plugin published because of an event (its `n`th publish for
-- it), committed with the batch; pruned with the applied ids (by a BRIN
-- index, as they are).
CREATE TABLE published_events (
    source_event_id TEXT COLLATE "C" NOT NULL,
    plugin          TEXT COLLATE "C" NOT NULL,
    n               INTEGER NOT NULL,
    event_id        TEXT NOT NULL,
    routing_key     TEXT NOT NULL,
    committed_ms    BIGINT NOT NULL,
    PRIMARY KEY (source_event_id, plugin, n)
);
CREATE INDEX published_events_by_time ON published_events USING brin (committed_ms);
-- The embedded bus's dead letters, found by the eventId of their body
-- (NULL for a body without one, and for dead letters kept before this
-- version).
ALTER TABLE dead_letters ADD COLUMN event_id TEXT COLLATE "C";
CREATE INDEX dead_letters_by_event ON dead_letters (event_id);
