-- Telling the app: callback endpoints, one delivery per (event, endpoint), and every
-- attempt at it.

CREATE TABLE callback_endpoints (
    id                      TEXT PRIMARY KEY,
    app_id                  TEXT NOT NULL REFERENCES apps(id),
    url                     TEXT NOT NULL,
    events                  TEXT NOT NULL,
    secret_sealed           TEXT NOT NULL,
    previous_secret_sealed  TEXT,
    previous_secret_expires INTEGER,
    status                  TEXT NOT NULL,
    failing_since           INTEGER,
    disabled_reason         TEXT,
    created                 INTEGER NOT NULL,
    updated                 INTEGER NOT NULL
);
CREATE INDEX callback_endpoints_app ON callback_endpoints (app_id, status);

CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    app_id          TEXT NOT NULL REFERENCES apps(id),
    endpoint_id     TEXT NOT NULL REFERENCES callback_endpoints(id),
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    leased_until_ms INTEGER NOT NULL DEFAULT 0,
    last_status     INTEGER,
    last_error      TEXT,
    created_ms      INTEGER NOT NULL,
    updated         INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_ms);
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, id);
CREATE INDEX deliveries_event ON deliveries (event_id);

CREATE TABLE delivery_attempts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id      TEXT NOT NULL REFERENCES deliveries(id),
    app_id           TEXT NOT NULL,
    attempted_ms     INTEGER NOT NULL,
    status_code      INTEGER,
    latency_ms       INTEGER NOT NULL,
    response_snippet TEXT,
    error            TEXT,
    node             TEXT NOT NULL
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);
