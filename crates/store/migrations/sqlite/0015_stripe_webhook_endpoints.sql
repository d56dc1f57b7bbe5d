-- The webhook endpoint paybridge made for itself at Stripe, one per app (issue 17).
-- `setup` says how the app receives events: `managed` (the endpoint below, its signing
-- secret sealed in payment_configs), `manual` (a secret set by hand), or why paybridge
-- could not make one (`unreachable_url`, `permission_denied`, `failed`), with `message`
-- naming the fallback. Hand-made endpoints are never recorded or touched.
CREATE TABLE stripe_webhook_endpoints (
    app_id         TEXT PRIMARY KEY REFERENCES apps(id),
    setup          TEXT NOT NULL,
    message        TEXT,
    endpoint_id    TEXT,
    url            TEXT,
    status         TEXT,
    api_version    TEXT,
    enabled_events TEXT,
    updated        BIGINT NOT NULL
);
