-- Switchyard store, PostgreSQL, version 2: what hosts sharing a store agree
-- on. Each plugin's state generation, moved on by every commit that read or
-- wrote the plugin's state: a commit that began at an older generation is
-- refused (another writer came first) and its batch runs again.
CREATE TABLE plugin_generations (
    plugin     TEXT COLLATE "C" PRIMARY KEY,
    generation BIGINT NOT NULL
);
-- Jobs one host at a time must do (a producer's polls): who, until when.
CREATE TABLE leases (
    name       TEXT COLLATE "C" PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
-- The hosts that use this store, when each was last seen, what it runs.
CREATE TABLE hosts (
    id           TEXT COLLATE "C" PRIMARY KEY,
    started_ms   BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    info         TEXT NOT NULL
);
