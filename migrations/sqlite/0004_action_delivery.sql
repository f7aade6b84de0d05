-- The delivery that created an action, for logs (SPEC §9: every step names its delivery).
ALTER TABLE actions ADD COLUMN delivery_id TEXT;
UPDATE actions SET delivery_id = (SELECT e.delivery_id FROM events e WHERE e.action_id = actions.id ORDER BY e.id LIMIT 1);
