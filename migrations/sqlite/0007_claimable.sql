-- When an action may next be claimed: its run_at while it waits (scheduled, pending), its lease's
-- end while it is worked on (in_progress: claimable again once the lease ran out), NULL once it
-- rests (held or final). The claim walks this index in order and stops after the actions it
-- takes, so its cost does not grow with the backlog (issue 11). The claim query repeats this
-- expression exactly, which is what lets both databases use the index.
CREATE INDEX actions_claimable ON actions ((CASE WHEN status IN ('scheduled', 'pending') THEN run_at WHEN status = 'in_progress' THEN lease_until END));
