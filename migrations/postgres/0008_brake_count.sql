-- The brake counts this kind's writes since its window began. With the kind beside write_at in
-- the index, that count reads index entries only and never the table (issue 11: with a
-- brake_max raised for a layoff of 20,000, each write counted up to 20,000 earlier writes row by
-- row, 15-20 ms each). write_at comes first on purpose: an index led by kind is picked for
-- intake's "last deactivation of this employee" lookup instead of the employee indexes.
CREATE INDEX actions_write_at_kind ON actions (write_at, kind);
DROP INDEX actions_write_at;
