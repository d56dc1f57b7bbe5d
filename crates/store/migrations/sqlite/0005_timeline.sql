-- A payment's timeline in the dashboard looks up provider events by their object.
CREATE INDEX provider_events_object ON provider_events (app_id, object_id);
-- The dashboard's charts group payments by day.
CREATE INDEX payments_created ON payments (app_id, created);
