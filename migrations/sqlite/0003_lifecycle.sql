-- "The same employee" shares the employee id or the email ignoring case: index both.
ALTER TABLE actions ADD COLUMN email_lc TEXT;
ALTER TABLE actions ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN email_lc TEXT;
ALTER TABLE events ADD COLUMN outcome TEXT;
UPDATE actions SET email_lc = LOWER(email);
UPDATE events SET email_lc = LOWER(email);
CREATE INDEX actions_email_lc ON actions (email_lc);
CREATE INDEX events_employee_id ON events (employee_id);
CREATE INDEX events_email_lc ON events (email_lc);
CREATE INDEX deliveries_received_at ON deliveries (received_at);
CREATE INDEX audit_at ON audit (at);
