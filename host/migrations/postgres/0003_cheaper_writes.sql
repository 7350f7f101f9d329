-- Switchyard store, PostgreSQL, version 3: cheaper writes per event.
-- Applied event ids are pruned by age: a BRIN index (a few pages, next to
-- free to keep up as ids are appended in time order) serves that as well
-- as a B-tree did at a fraction of its cost per insert.
DROP INDEX IF EXISTS applied_events_by_time;
CREATE INDEX applied_events_by_time ON applied_events USING brin (applied_ms);
-- Room on each page for the new version of a row: an update of a document
-- or a state value (the same key again) then stays on its page and needs
-- no index entry (a HOT update).
ALTER TABLE documents SET (fillfactor = 80);
ALTER TABLE plugin_state SET (fillfactor = 80);
