-- Customer sessions: a short-lived secret a server key mints so that a browser (with
-- the publishable key) may name one existing customer in a checkout. Only the
-- secret's SHA-256 is kept.
CREATE TABLE customer_sessions (
    id          TEXT PRIMARY KEY,
    app_id      TEXT NOT NULL REFERENCES apps(id),
    customer_id TEXT NOT NULL REFERENCES customers(id),
    secret_hash TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    created     BIGINT NOT NULL
);
CREATE UNIQUE INDEX customer_sessions_secret ON customer_sessions (secret_hash);
CREATE INDEX customer_sessions_expiry ON customer_sessions (expires_at);
