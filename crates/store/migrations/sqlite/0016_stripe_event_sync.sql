-- Where the catch-up worker stands in each Stripe app's `GET /v1/events` (issue 17):
-- the newest event `created` it has read (the next round reads from there again, the
-- overlap dropped as already known), and when a round last completed.
CREATE TABLE stripe_event_sync (
    app_id        TEXT PRIMARY KEY REFERENCES apps(id),
    cursor        BIGINT NOT NULL,
    last_event_id TEXT,
    last_run      BIGINT,
    last_success  BIGINT,
    last_error    TEXT,
    events_read   BIGINT NOT NULL DEFAULT 0,
    events_new    BIGINT NOT NULL DEFAULT 0
);
