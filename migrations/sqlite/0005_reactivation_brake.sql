-- The brake has one row per kind of write: 1 = deactivations, 2 = reactivations (their own count).
INSERT INTO brake (id, engaged) VALUES (2, 0);
