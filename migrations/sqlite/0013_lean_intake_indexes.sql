-- Two B-trees that every intake commit wrote a page of, for nothing (BENCHMARKS.md, 2026-12-06):
-- - `events_delivery`: no query looks events up by their delivery (deliveries are never deleted,
--   so not even a foreign-key check needs it).
-- - `actions_write_at_kind` (0008) held every action, but the brake counts only actions written
--   (`write_at >= ...`, which implies NOT NULL): partial, intake's new actions never enter it.
DROP INDEX IF EXISTS events_delivery;
DROP INDEX IF EXISTS actions_write_at_kind;
CREATE INDEX actions_write_at_kind ON actions (write_at, kind) WHERE write_at IS NOT NULL;
