//! The webhook endpoint paybridge made for an app at Stripe, or why it has none. Its
//! signing secret lives sealed in `payment_configs`; only the endpoint's public facts
//! are here.

use crate::{now, Db, Result};

#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct EndpointRow {
    pub app_id: String,
    /// `managed`, `manual`, `unreachable_url`, `permission_denied` or `failed`.
    pub setup: String,
    pub message: Option<String>,
    pub endpoint_id: Option<String>,
    pub url: Option<String>,
    pub status: Option<String>,
    pub api_version: Option<String>,
    /// JSON array of event types.
    pub enabled_events: Option<String>,
    pub updated: i64,
}

const COLUMNS: &str =
    "app_id, setup, message, endpoint_id, url, status, api_version, enabled_events, updated";

pub async fn get(db: &Db, app: &str) -> Result<Option<EndpointRow>> {
    Ok(sqlx::query_as::<_, EndpointRow>(&format!(
        "SELECT {COLUMNS} FROM stripe_webhook_endpoints WHERE app_id = $1"
    ))
    .bind(app)
    .fetch_optional(db.reader())
    .await?)
}

/// Records the app's endpoint state, replacing what was there.
pub async fn put(db: &Db, row: &EndpointRow) -> Result<EndpointRow> {
    let mut w = db.autocommit().await?;
    let stored = sqlx::query_as::<_, EndpointRow>(&format!(
        "INSERT INTO stripe_webhook_endpoints ({COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (app_id) DO UPDATE SET setup = $2, message = $3, endpoint_id = $4, \
             url = $5, status = $6, api_version = $7, enabled_events = $8, updated = $9 \
         RETURNING {COLUMNS}"
    ))
    .bind(&row.app_id)
    .bind(&row.setup)
    .bind(&row.message)
    .bind(&row.endpoint_id)
    .bind(&row.url)
    .bind(&row.status)
    .bind(&row.api_version)
    .bind(&row.enabled_events)
    .bind(now())
    .fetch_one(&mut *w)
    .await?;
    w.commit().await?;
    Ok(stored)
}

/// Apps on the `stripe` provider with a secret key: (app, endpoint setup, endpoint URL).
pub async fn stripe_apps(db: &Db) -> Result<Vec<(String, Option<String>, Option<String>)>> {
    Ok(
        sqlx::query_as::<_, (String, Option<String>, Option<String>)>(
            "SELECT c.app_id, e.setup, e.url FROM payment_configs c \
             LEFT JOIN stripe_webhook_endpoints e ON e.app_id = c.app_id \
             WHERE c.provider = 'stripe' AND c.secret_key_sealed IS NOT NULL ORDER BY c.app_id",
        )
        .fetch_all(db.reader())
        .await?,
    )
}

/// Whether the app has a webhook signing secret.
pub async fn has_signing_secret(db: &Db, app: &str) -> Result<bool> {
    Ok(sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM payment_configs WHERE app_id = $1 AND signing_secret_sealed IS NOT NULL",
    )
    .bind(app)
    .fetch_one(db.reader())
    .await?
        > 0)
}
