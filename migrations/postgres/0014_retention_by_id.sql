-- Two more B-trees that every intake commit wrote pages of (BENCHMARKS.md, 2026-12-06, fifth
-- session): `deliveries_received_at` and `audit_at`, which only the hourly retention purge read.
-- The purge now walks deliveries and audit rows in id order (ids grow with time) up to the first
-- row that is not old yet, and still deletes or clears only rows older than its cutoff.
DROP INDEX IF EXISTS deliveries_received_at;
DROP INDEX IF EXISTS audit_at;
