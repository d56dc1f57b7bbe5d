-- Telling the app: callback endpoints, one delivery per (event, endpoint), and every
-- attempt at it.

CREATE TABLE callback_endpoints (
    id                      TEXT PRIMARY KEY,
    app_id                  TEXT NOT NULL REFERENCES apps(id),
    url                     TEXT NOT NULL,
    events                  TEXT NOT NULL,
    secret_sealed           TEXT NOT NULL,
    previous_secret_sealed  TEXT,
    previous_secret_expires BIGINT,
    status                  TEXT NOT NULL,
    failing_since           BIGINT,
    disabled_reason         TEXT,
    created                 BIGINT NOT NULL,
    updated                 BIGINT NOT NULL
);
CREATE INDEX callback_endpoints_app ON callback_endpoints (app_id, status);

CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    app_id          TEXT NOT NULL REFERENCES apps(id),
    endpoint_id     TEXT NOT NULL REFERENCES callback_endpoints(id),
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    leased_until_ms BIGINT NOT NULL DEFAULT 0,
    last_status     BIGINT,
    last_error      TEXT,
    created_ms      BIGINT NOT NULL,
    updated         BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_ms);
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, id);
CREATE INDEX deliveries_event ON deliveries (event_id);

CREATE TABLE delivery_attempts (
    id               BIGSERIAL PRIMARY KEY,
    delivery_id      TEXT NOT NULL REFERENCES deliveries(id),
    app_id           TEXT NOT NULL,
    attempted_ms     BIGINT NOT NULL,
    status_code      BIGINT,
    latency_ms       BIGINT NOT NULL,
    response_snippet TEXT,
    error            TEXT,
    node             TEXT NOT NULL
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);
