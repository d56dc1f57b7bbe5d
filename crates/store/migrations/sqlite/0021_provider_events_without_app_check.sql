-- PostgreSQL's 0021 drops the foreign key from `provider_events` to `apps`. SQLite
-- cannot drop a constraint without copying the whole table, its largest, and its
-- check costs no lock there (one lookup of the app's row, which the writer has in
-- cache), so on SQLite the key stays and this migration changes nothing.
SELECT 1;
