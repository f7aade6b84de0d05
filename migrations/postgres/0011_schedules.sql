-- Scheduled work that one replica at a time runs (scheduled reconciliation, §12): when it is due
-- next, and who runs it now under a lease.
CREATE TABLE schedules (
    name        TEXT PRIMARY KEY,
    next_at     BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT
);
