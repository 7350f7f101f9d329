-- Switchyard store, SQLite, version 3: nothing to change here (version 3
-- made PostgreSQL's writes cheaper; both backends keep the same numbers).
SELECT 1;
