-- Money out and recurring: refunds (with the amount each payment has promised back),
-- subscriptions, and Stripe Connect's accounts and transfers.

-- What pending and succeeded refunds of a payment add up to. A refund is admitted only
-- by a conditional update that keeps it at or below amount_captured.
ALTER TABLE payments ADD COLUMN amount_refunding INTEGER NOT NULL DEFAULT 0;

CREATE TABLE refunds (
    id                     TEXT PRIMARY KEY,
    app_id                 TEXT NOT NULL REFERENCES apps(id),
    payment_id             TEXT NOT NULL REFERENCES payments(id),
    order_id               TEXT NOT NULL,
    amount                 INTEGER NOT NULL,
    currency               TEXT NOT NULL,
    reason                 TEXT,
    status                 TEXT NOT NULL,
    failure_reason         TEXT,
    provider_refund_id     TEXT,
    refund_application_fee INTEGER NOT NULL DEFAULT 0,
    reverse_transfer       INTEGER NOT NULL DEFAULT 0,
    source                 TEXT NOT NULL,
    metadata               TEXT NOT NULL,
    created                INTEGER NOT NULL,
    updated                INTEGER NOT NULL
);
CREATE INDEX refunds_app ON refunds (app_id, id);
CREATE INDEX refunds_payment ON refunds (payment_id);
CREATE INDEX refunds_provider ON refunds (app_id, provider_refund_id);
CREATE INDEX refunds_status ON refunds (status, updated);

CREATE TABLE subscriptions (
    id                       TEXT PRIMARY KEY,
    app_id                   TEXT NOT NULL REFERENCES apps(id),
    customer_id              TEXT REFERENCES customers(id),
    product_id               TEXT,
    provider_price_id        TEXT,
    quantity                 INTEGER NOT NULL,
    unit_amount              INTEGER NOT NULL,
    currency                 TEXT NOT NULL,
    status                   TEXT NOT NULL,
    status_at                INTEGER NOT NULL,
    provider_subscription_id TEXT,
    current_period_start     INTEGER,
    current_period_end       INTEGER,
    cancel_at_period_end     INTEGER NOT NULL DEFAULT 0,
    canceled_at              INTEGER,
    checkout_id              TEXT,
    metadata                 TEXT NOT NULL,
    created                  INTEGER NOT NULL,
    updated                  INTEGER NOT NULL
);
CREATE INDEX subscriptions_app ON subscriptions (app_id, id);
CREATE INDEX subscriptions_provider ON subscriptions (app_id, provider_subscription_id);
CREATE INDEX subscriptions_customer ON subscriptions (app_id, customer_id);

-- A recurring charge's order knows its invoice, so an invoice makes one order only.
ALTER TABLE orders ADD COLUMN provider_invoice_id TEXT;
CREATE UNIQUE INDEX orders_invoice ON orders (app_id, provider_invoice_id) WHERE provider_invoice_id IS NOT NULL;

CREATE TABLE connected_accounts (
    id                  TEXT PRIMARY KEY,
    app_id              TEXT NOT NULL REFERENCES apps(id),
    provider_account_id TEXT NOT NULL,
    email               TEXT,
    external_id         TEXT,
    country             TEXT,
    deleted             INTEGER NOT NULL DEFAULT 0,
    created             INTEGER NOT NULL,
    updated             INTEGER NOT NULL
);
CREATE INDEX connected_accounts_app ON connected_accounts (app_id, id);
CREATE UNIQUE INDEX connected_accounts_provider ON connected_accounts (app_id, provider_account_id);

CREATE TABLE transfers (
    id                   TEXT PRIMARY KEY,
    app_id               TEXT NOT NULL REFERENCES apps(id),
    destination          TEXT NOT NULL,
    amount               INTEGER NOT NULL,
    currency             TEXT NOT NULL,
    provider_transfer_id TEXT,
    status               TEXT NOT NULL,
    metadata             TEXT NOT NULL,
    created              INTEGER NOT NULL
);
CREATE INDEX transfers_app ON transfers (app_id, id);
