-- An idempotency key belongs to the API key that used it, not to the whole app: a
-- stored response (a new key's secret, a callback endpoint's signing secret) must never
-- be replayed to another of the app's keys, and whether another key used an
-- Idempotency-Key must not be learnable. The primary key gains the API key's id.
-- SQLite cannot change a primary key in place, so the table is rebuilt. Rows kept
-- from before get key_id '' and are never matched again (nobody can say which key
-- made them); housekeeping removes them after the idempotency TTL. The default lets
-- a node still on the previous version keep working during an upgrade.
CREATE TABLE idempotency_keys_v7 (
    scope       TEXT NOT NULL,
    key_id      TEXT NOT NULL DEFAULT '',
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('running', 'done')),
    status      INTEGER,
    body        TEXT,
    created     INTEGER NOT NULL,
    locked_ms   INTEGER NOT NULL,
    PRIMARY KEY (scope, key_id, key)
);
INSERT INTO idempotency_keys_v7 (scope, key_id, key, fingerprint, state, status, body, created, locked_ms)
    SELECT scope, '', key, fingerprint, state, status, body, created, locked_ms FROM idempotency_keys;
DROP TABLE idempotency_keys;
ALTER TABLE idempotency_keys_v7 RENAME TO idempotency_keys;
CREATE INDEX idempotency_keys_created ON idempotency_keys (created);
