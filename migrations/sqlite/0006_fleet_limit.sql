-- Kept in step with PostgreSQL; a single SQLite process keeps its limit in memory.
CREATE TABLE fleet_limit (
    id           INTEGER PRIMARY KEY,
    lim          REAL NOT NULL,
    decreased_at INTEGER NOT NULL DEFAULT 0
);
INSERT INTO fleet_limit (id, lim) VALUES (1, 1000000);
