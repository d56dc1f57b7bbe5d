-- Every stored provider event checked its app against `apps` (a foreign key): one
-- trigger run per inserted row, and a `FOR KEY SHARE` lock on the app's row taken by
-- every webhook batch. Two lanes (or nodes) hold that lock on the same row at once,
-- so PostgreSQL records the holders as a multixact, written for every batch.
-- Nothing deletes an app, and an event is stored only for the app whose signing
-- secret verified it, looked up just before: the check never refused a row. The
-- index and primary key stay. `ALTER TABLE` takes an ACCESS EXCLUSIVE lock on
-- `provider_events` for a moment (no rows are read or written).
ALTER TABLE provider_events DROP CONSTRAINT IF EXISTS provider_events_app_id_fkey;
