-- Foundation: apps, keys, payment configuration, products, idempotency keys.
-- Numbers and flags are INTEGER (64-bit), times are unix seconds unless named *_ms.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE apps (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    environment TEXT NOT NULL CHECK (environment IN ('test', 'live')),
    demo        INTEGER NOT NULL DEFAULT 0,
    created     INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    app_id      TEXT REFERENCES apps(id),
    role        TEXT NOT NULL,
    permissions TEXT NOT NULL DEFAULT '',
    key_hash    TEXT NOT NULL UNIQUE,
    redacted    TEXT NOT NULL,
    created     INTEGER NOT NULL,
    revoked     INTEGER
);
CREATE INDEX api_keys_app ON api_keys (app_id);

CREATE TABLE payment_configs (
    app_id                          TEXT PRIMARY KEY REFERENCES apps(id),
    provider                        TEXT NOT NULL,
    public_key                      TEXT,
    secret_key_sealed               TEXT,
    signing_secret_sealed           TEXT,
    previous_signing_secret_sealed  TEXT,
    previous_signing_secret_expires INTEGER,
    updated                         INTEGER NOT NULL
);

CREATE TABLE products (
    id                       TEXT PRIMARY KEY,
    app_id                   TEXT NOT NULL REFERENCES apps(id),
    name                     TEXT NOT NULL,
    description              TEXT,
    unit_amount              INTEGER NOT NULL,
    currency                 TEXT NOT NULL,
    recurring_interval       TEXT,
    recurring_interval_count INTEGER,
    provider_product_id      TEXT,
    provider_price_id        TEXT,
    active                   INTEGER NOT NULL,
    metadata                 TEXT NOT NULL,
    deleted                  INTEGER NOT NULL DEFAULT 0,
    created                  INTEGER NOT NULL,
    updated                  INTEGER NOT NULL
);
CREATE INDEX products_app ON products (app_id, id);
CREATE UNIQUE INDEX products_price ON products (app_id, provider_price_id)
    WHERE provider_price_id IS NOT NULL AND deleted = 0;

CREATE TABLE idempotency_keys (
    scope       TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('running', 'done')),
    status      INTEGER,
    body        TEXT,
    created     INTEGER NOT NULL,
    locked_ms   INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created);
