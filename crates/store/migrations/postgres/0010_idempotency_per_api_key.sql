-- An idempotency key belongs to the API key that used it, not to the whole app: a
-- stored response (a new key's secret, a callback endpoint's signing secret) must never
-- be replayed to another of the app's keys, and whether another key used an
-- Idempotency-Key must not be learnable. The primary key gains the API key's id.
-- Rows from before get key_id '' and are never matched again (nobody can say which
-- key made them); housekeeping removes them after the idempotency TTL. The default
-- lets a node still on the previous version keep working during a rolling upgrade.
ALTER TABLE idempotency_keys ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (scope, key_id, key);
