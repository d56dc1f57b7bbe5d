-- Money in: customers and their cards, orders, payments, checkout sessions, the
-- provider's events as received, our own events (the outbox), and the sandbox's state.

CREATE TABLE customers (
    id                     TEXT PRIMARY KEY,
    app_id                 TEXT NOT NULL REFERENCES apps(id),
    external_id            TEXT NOT NULL,
    email                  TEXT,
    name                   TEXT,
    metadata               TEXT NOT NULL,
    provider_customer_id   TEXT,
    default_payment_method TEXT,
    created                INTEGER NOT NULL,
    updated                INTEGER NOT NULL
);
CREATE UNIQUE INDEX customers_external ON customers (app_id, external_id);
CREATE INDEX customers_provider ON customers (app_id, provider_customer_id);

CREATE TABLE payment_methods (
    id                         TEXT PRIMARY KEY,
    app_id                     TEXT NOT NULL REFERENCES apps(id),
    customer_id                TEXT NOT NULL REFERENCES customers(id),
    provider_payment_method_id TEXT NOT NULL,
    brand                      TEXT,
    last4                      TEXT,
    exp_month                  INTEGER,
    exp_year                   INTEGER,
    detached                   INTEGER NOT NULL DEFAULT 0,
    created                    INTEGER NOT NULL
);
CREATE UNIQUE INDEX payment_methods_provider ON payment_methods (app_id, provider_payment_method_id);
CREATE INDEX payment_methods_customer ON payment_methods (customer_id);

CREATE TABLE orders (
    id              TEXT PRIMARY KEY,
    app_id          TEXT NOT NULL REFERENCES apps(id),
    customer_id     TEXT REFERENCES customers(id),
    currency        TEXT NOT NULL,
    amount_total    INTEGER NOT NULL,
    amount_paid     INTEGER NOT NULL DEFAULT 0,
    amount_refunded INTEGER NOT NULL DEFAULT 0,
    status          TEXT NOT NULL,
    line_items      TEXT NOT NULL,
    metadata        TEXT NOT NULL,
    client_secret   TEXT NOT NULL,
    subscription_id TEXT,
    created         INTEGER NOT NULL,
    updated         INTEGER NOT NULL
);
CREATE INDEX orders_app ON orders (app_id, id);
CREATE INDEX orders_customer ON orders (app_id, customer_id);

CREATE TABLE payments (
    id                        TEXT PRIMARY KEY,
    app_id                    TEXT NOT NULL REFERENCES apps(id),
    order_id                  TEXT NOT NULL REFERENCES orders(id),
    customer_id               TEXT REFERENCES customers(id),
    method                    TEXT NOT NULL,
    capture_method            TEXT NOT NULL,
    provider                  TEXT NOT NULL,
    lifecycle                 TEXT NOT NULL,
    status                    TEXT NOT NULL,
    amount                    INTEGER NOT NULL,
    currency                  TEXT NOT NULL,
    amount_capturable         INTEGER NOT NULL DEFAULT 0,
    amount_captured           INTEGER NOT NULL DEFAULT 0,
    amount_refunded           INTEGER NOT NULL DEFAULT 0,
    dispute                   TEXT NOT NULL DEFAULT 'none',
    failure_code              TEXT,
    decline_code              TEXT,
    failure_message           TEXT,
    failure_at                INTEGER,
    save_card                 INTEGER NOT NULL DEFAULT 0,
    payment_method_id         TEXT,
    provider_payment_intent   TEXT,
    provider_checkout_session TEXT,
    provider_charge           TEXT,
    client_secret_sealed      TEXT,
    payment_url               TEXT,
    application_fee_amount    INTEGER,
    transfer_destination      TEXT,
    metadata                  TEXT NOT NULL,
    created                   INTEGER NOT NULL,
    updated                   INTEGER NOT NULL
);
CREATE INDEX payments_app ON payments (app_id, id);
CREATE INDEX payments_order ON payments (order_id);
CREATE INDEX payments_customer ON payments (app_id, customer_id);
CREATE INDEX payments_intent ON payments (app_id, provider_payment_intent);
CREATE INDEX payments_session ON payments (app_id, provider_checkout_session);
CREATE INDEX payments_lifecycle ON payments (lifecycle, updated);

CREATE TABLE checkout_sessions (
    id                  TEXT PRIMARY KEY,
    app_id              TEXT NOT NULL REFERENCES apps(id),
    order_id            TEXT NOT NULL REFERENCES orders(id),
    payment_id          TEXT NOT NULL REFERENCES payments(id),
    customer_id         TEXT REFERENCES customers(id),
    mode                TEXT NOT NULL,
    status              TEXT NOT NULL,
    url                 TEXT,
    success_url         TEXT NOT NULL,
    cancel_url          TEXT NOT NULL,
    save_card           INTEGER NOT NULL DEFAULT 0,
    expires_at          INTEGER NOT NULL,
    provider_session_id TEXT,
    created             INTEGER NOT NULL,
    updated             INTEGER NOT NULL
);
CREATE INDEX checkout_sessions_app ON checkout_sessions (app_id, id);
CREATE INDEX checkout_sessions_provider ON checkout_sessions (app_id, provider_session_id);
CREATE INDEX checkout_sessions_expiry ON checkout_sessions (status, expires_at);
CREATE INDEX checkout_sessions_order ON checkout_sessions (order_id);

-- Every verified event from the provider, once per (app, event id), with what
-- processing made of it. `outcome` is processed, ignored, pending or failed.
CREATE TABLE provider_events (
    app_id         TEXT NOT NULL REFERENCES apps(id),
    id             TEXT NOT NULL,
    type           TEXT NOT NULL,
    created        INTEGER NOT NULL,
    livemode       INTEGER NOT NULL,
    object_id      TEXT,
    payload        TEXT NOT NULL,
    received_count INTEGER NOT NULL DEFAULT 1,
    first_received INTEGER NOT NULL,
    last_received  INTEGER NOT NULL,
    outcome        TEXT NOT NULL,
    detail         TEXT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    processed_at   INTEGER,
    PRIMARY KEY (app_id, id)
);
CREATE INDEX provider_events_type ON provider_events (app_id, type);
CREATE INDEX provider_events_outcome ON provider_events (outcome, first_received);

-- Our events: written in the same transaction as the change that causes them.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    app_id      TEXT NOT NULL REFERENCES apps(id),
    type        TEXT NOT NULL,
    object_id   TEXT NOT NULL,
    order_id    TEXT,
    payment_id  TEXT,
    customer_id TEXT,
    data        TEXT NOT NULL,
    created     INTEGER NOT NULL
);
CREATE INDEX events_app ON events (app_id, seq);
CREATE INDEX events_order ON events (app_id, order_id, seq);
CREATE INDEX events_customer ON events (app_id, customer_id, seq);

-- The sandbox provider's own objects (its "Stripe account"), and the signed events
-- it still has to deliver to the webhook endpoint.
CREATE TABLE sandbox_objects (
    app_id  TEXT NOT NULL,
    id      TEXT NOT NULL,
    kind    TEXT NOT NULL,
    data    TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (app_id, id)
);
CREATE TABLE sandbox_outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id          TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    payload         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    delivered       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sandbox_outbox_due ON sandbox_outbox (delivered, next_attempt_ms);
