-- Operator approval lifts safety holds; write_at dates each write for the brake's sliding window.
ALTER TABLE actions ADD COLUMN approved BIGINT NOT NULL DEFAULT 0;
ALTER TABLE actions ADD COLUMN write_at BIGINT;
CREATE INDEX actions_write_at ON actions (write_at);

-- One row: whether the mass-deactivation brake is engaged (one notification per engagement).
CREATE TABLE brake (
    id         BIGINT PRIMARY KEY,
    engaged    BIGINT NOT NULL DEFAULT 0,
    engaged_at BIGINT
);
INSERT INTO brake (id, engaged) VALUES (1, 0);
