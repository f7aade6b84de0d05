-- Times are integer milliseconds since the Unix epoch (UTC), identical on both backends.
CREATE TABLE deliveries (
    id           TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    dedupe_key   TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    content_type TEXT,
    body         TEXT,              -- raw body (PII): purged after retention.payload_days
    body_sha256  TEXT NOT NULL,
    request_id   TEXT,
    UNIQUE (source, dedupe_key)
);

CREATE TABLE actions (
    id            TEXT PRIMARY KEY, -- act_<uuid v7>: ordered by creation
    kind          TEXT NOT NULL,
    status        TEXT NOT NULL,
    reason        TEXT,
    due_at        BIGINT NOT NULL, -- when the HR fact takes effect
    run_at        BIGINT NOT NULL, -- when a worker may next take it (due_at, or after a retry wait)
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    source        TEXT NOT NULL,
    employee_id   TEXT,
    email         TEXT,
    employee_name TEXT,
    wf_user_id    TEXT,
    wf_user_name  TEXT,
    wf_user_email TEXT,
    candidates    TEXT,             -- JSON list for ambiguous_match
    attempts      BIGINT NOT NULL DEFAULT 0,
    write_sent    BIGINT NOT NULL DEFAULT 0, -- a write may have reached Workfront
    lease_owner   TEXT,
    lease_until   BIGINT,
    prev_owner    TEXT,             -- lease owner found when last claimed: set means resumed
    last_error    TEXT,
    done_at       BIGINT
);
CREATE INDEX actions_runnable ON actions (status, run_at);
CREATE INDEX actions_employee_id ON actions (employee_id);
CREATE INDEX actions_email ON actions (email);

CREATE TABLE events (
    id           TEXT PRIMARY KEY,
    delivery_id  TEXT NOT NULL REFERENCES deliveries (id),
    action_id    TEXT REFERENCES actions (id),
    type         TEXT NOT NULL,
    sender_type  TEXT NOT NULL,
    employee_id  TEXT,
    email        TEXT,
    name         TEXT,
    effective_at TEXT,
    occurred_at  BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX events_action ON events (action_id);
CREATE INDEX events_delivery ON events (delivery_id);

CREATE TABLE audit (
    id        BIGSERIAL PRIMARY KEY,
    action_id TEXT NOT NULL REFERENCES actions (id),
    at        BIGINT NOT NULL,
    step      TEXT NOT NULL,
    detail    TEXT NOT NULL     -- JSON object
);
CREATE INDEX audit_action ON audit (action_id, id);
