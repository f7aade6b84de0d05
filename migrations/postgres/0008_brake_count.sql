-- The brake counts this kind's writes since the window began (issue 11: a layoff of 20,000 made
-- every write count the earlier ones through the table, O(writes) per write). With the kind in
-- the index the count reads index entries only, and it stops once it passed the limit.
CREATE INDEX actions_kind_write_at ON actions (kind, write_at);
