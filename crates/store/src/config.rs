//! An app's payment configuration. Secret values arrive sealed (see
//! `paybridge_core::vault`) and leave sealed; this module never sees a plain secret.

use crate::{now, Db, Result};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConfigRow {
    pub app_id: String,
    pub provider: String,
    pub public_key: Option<String>,
    pub secret_key_sealed: Option<String>,
    pub signing_secret_sealed: Option<String>,
    pub previous_signing_secret_sealed: Option<String>,
    pub previous_signing_secret_expires: Option<i64>,
    pub updated: i64,
}

const COLUMNS: &str = "app_id, provider, public_key, secret_key_sealed, signing_secret_sealed, \
    previous_signing_secret_sealed, previous_signing_secret_expires, updated";

pub async fn get(db: &Db, app: &str) -> Result<Option<ConfigRow>> {
    Ok(sqlx::query_as::<_, ConfigRow>(&format!(
        "SELECT {COLUMNS} FROM payment_configs WHERE app_id = $1"
    ))
    .bind(app)
    .fetch_optional(db.reader())
    .await?)
}

/// Sets the provider and its keys, keeping any signing secrets already set.
pub async fn put_provider(
    db: &Db,
    app: &str,
    provider: &str,
    public_key: Option<&str>,
    secret_key_sealed: Option<&str>,
) -> Result<ConfigRow> {
    let mut w = db.autocommit().await?;
    let row = sqlx::query_as::<_, ConfigRow>(&format!(
        "INSERT INTO payment_configs (app_id, provider, public_key, secret_key_sealed, updated) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (app_id) DO UPDATE SET provider = $2, public_key = $3, \
             secret_key_sealed = $4, updated = $5 \
         RETURNING {COLUMNS}"
    ))
    .bind(app)
    .bind(provider)
    .bind(public_key)
    .bind(secret_key_sealed)
    .bind(now())
    .fetch_one(&mut *w)
    .await?;
    w.commit().await?;
    Ok(row)
}

/// Sets a new signing secret. The one it replaces stays valid until `previous_expires`
/// (unix seconds), so Stripe's secret roll causes no failed deliveries.
pub async fn put_signing_secret(
    db: &Db,
    app: &str,
    sealed: &str,
    previous_expires: i64,
) -> Result<Option<ConfigRow>> {
    let mut w = db.autocommit().await?;
    let row = sqlx::query_as::<_, ConfigRow>(&format!(
        "UPDATE payment_configs SET \
             previous_signing_secret_sealed = signing_secret_sealed, \
             previous_signing_secret_expires = CASE WHEN signing_secret_sealed IS NULL \
                 THEN NULL ELSE $3 END, \
             signing_secret_sealed = $2, updated = $4 \
         WHERE app_id = $1 RETURNING {COLUMNS}"
    ))
    .bind(app)
    .bind(sealed)
    .bind(previous_expires)
    .bind(now())
    .fetch_optional(&mut *w)
    .await?;
    w.commit().await?;
    Ok(row)
}

/// The app's provider name (`stripe`, `sandbox`), read inside a transaction.
pub async fn provider_of(conn: &mut crate::Conn, app: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT provider FROM payment_configs WHERE app_id = $1")
            .bind(app)
            .fetch_optional(&mut *conn)
            .await?,
    )
}
