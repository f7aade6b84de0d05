-- Reconciliation reports (SPEC §12). A report is `running` until every row has an outcome; a
-- replica works on it under a lease, so a report outlives the process that started it.
CREATE TABLE reconciliations (
    id          TEXT PRIMARY KEY,   -- rec_<uuid v7>
    apply       INTEGER NOT NULL,   -- 1: active leavers get a deactivation
    status      TEXT NOT NULL,      -- running | done
    origin      TEXT NOT NULL,      -- request | schedule:<source>
    created_at  INTEGER NOT NULL,
    finished_at INTEGER,
    total       INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER
);
CREATE INDEX reconciliations_status ON reconciliations (status, created_at);

-- One row per leaver, in input order (idx). The rows hold PII: they go with their report when
-- retention.audit_days have passed.
CREATE TABLE reconciliation_rows (
    reconciliation_id TEXT NOT NULL REFERENCES reconciliations (id) ON DELETE CASCADE,
    idx           INTEGER NOT NULL,
    employee_id   TEXT,
    email         TEXT,
    terminated_on TEXT,
    outcome       TEXT,             -- NULL until checked
    detail        TEXT,             -- why invalid; while unchecked, the last Workfront failure
    wf_user_id    TEXT,
    wf_user_name  TEXT,
    wf_user_email TEXT,
    action_id     TEXT,
    PRIMARY KEY (reconciliation_id, idx)
);
