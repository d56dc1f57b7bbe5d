-- Fewer bytes written per received event (issue 16; see BENCHMARKS.md). Every event
-- stored is an insert into each index of provider_events, and each index insert at a
-- new position dirties a page that the commit writes whole (4 KiB on SQLite's WAL).
--
-- `provider_events_type` (app_id, type) served only the admin listing's `type` filter,
-- which sorts all the matching rows by time either way; without it that filter reads
-- the app's rows through the primary key instead. It cost one index entry per event
-- at one position per type.
DROP INDEX provider_events_type;
-- The timeline looks up provider events by object id (`pi_…`, `ch_…`): the id alone
-- finds them, and the query still checks the app on each row. The entries shrink by
-- the app id (about half), so the index has about half the pages to dirty.
DROP INDEX provider_events_object;
CREATE INDEX provider_events_object ON provider_events (object_id);
