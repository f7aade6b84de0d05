-- `actions_email` (0001) served lookups by email before `email_lc` (0003) took them over; no query
-- reads it any more, and every stored action paid for it: one more B-tree page, at a random place,
-- written by each intake commit (BENCHMARKS.md, 2026-12-06).
DROP INDEX IF EXISTS actions_email;
