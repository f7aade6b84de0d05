-- When the worker asked the HR vendor's API about this action's employee (§4.3): asked once.
ALTER TABLE actions ADD COLUMN hr_looked_up_at BIGINT;
