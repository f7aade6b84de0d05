-- The fleet's adaptive Workfront concurrency limit, shared by every replica (one row).
CREATE TABLE fleet_limit (
    id           BIGINT PRIMARY KEY,
    lim          DOUBLE PRECISION NOT NULL,
    decreased_at BIGINT NOT NULL DEFAULT 0
);
INSERT INTO fleet_limit (id, lim) VALUES (1, 1000000);
