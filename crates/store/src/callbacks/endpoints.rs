//! The app's callback endpoints: where its events go, signed with whose secret.

use sqlx::{Any, Executor};

use crate::page::{Arg, Select};
use crate::{now, Conn, Db, ListParams, Page, Result, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: String,
    pub app_id: String,
    pub url: String,
    /// JSON array of event types (`["*"]` for all).
    pub events: String,
    pub secret_sealed: String,
    pub previous_secret_sealed: Option<String>,
    pub previous_secret_expires: Option<i64>,
    /// `enabled`, `disabled` or `deleted`.
    pub status: String,
    pub failing_since: Option<i64>,
    pub disabled_reason: Option<String>,
    pub created: i64,
    pub updated: i64,
}

const ENDPOINT_COLUMNS: &str =
    "id, app_id, url, events, secret_sealed, previous_secret_sealed, previous_secret_expires, \
    status, failing_since, disabled_reason, created, updated";

pub async fn insert_endpoint<'e, E: Executor<'e, Database = Any>>(
    e: E,
    r: &EndpointRow,
) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO callback_endpoints ({ENDPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    ))
    .bind(&r.id)
    .bind(&r.app_id)
    .bind(&r.url)
    .bind(&r.events)
    .bind(&r.secret_sealed)
    .bind(&r.previous_secret_sealed)
    .bind(r.previous_secret_expires)
    .bind(&r.status)
    .bind(r.failing_since)
    .bind(&r.disabled_reason)
    .bind(r.created)
    .bind(r.updated)
    .execute(e)
    .await?;
    Ok(())
}

/// Inserts an endpoint unless its app already has `limit` (enabled or disabled ones).
/// Returns whether it was inserted. The app's row is locked for the count, so
/// concurrent creations cannot pass the limit together (SQLite's one writer already
/// serializes them).
pub async fn insert_endpoint_within(db: &Db, r: &EndpointRow, limit: i64) -> Result<bool> {
    let mut tx = db.begin().await?;
    sqlx::query_scalar::<_, String>(&format!(
        "SELECT id FROM apps WHERE id = $1{}",
        db.for_update()
    ))
    .bind(&r.app_id)
    .fetch_optional(&mut *tx)
    .await?;
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM callback_endpoints WHERE app_id = $1 AND status <> 'deleted'",
    )
    .bind(&r.app_id)
    .fetch_one(&mut *tx)
    .await?;
    if n >= limit {
        return Ok(false);
    }
    insert_endpoint(&mut *tx, r).await?;
    tx.commit().await?;
    Ok(true)
}

pub async fn endpoint(db: &Db, app: &str, id: &str) -> Result<EndpointRow> {
    sqlx::query_as::<_, EndpointRow>(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM callback_endpoints WHERE app_id = $1 AND id = $2 AND status <> 'deleted'"
    ))
    .bind(app)
    .bind(id)
    .fetch_optional(db.reader())
    .await?
    .ok_or(StoreError::NotFound)
}

/// An endpoint whatever its status (deleted ones too).
pub async fn endpoint_any(db: &Db, app: &str, id: &str) -> Result<EndpointRow> {
    sqlx::query_as::<_, EndpointRow>(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM callback_endpoints WHERE app_id = $1 AND id = $2"
    ))
    .bind(app)
    .bind(id)
    .fetch_optional(db.reader())
    .await?
    .ok_or(StoreError::NotFound)
}

pub async fn list_endpoints(db: &Db, app: &str, params: &ListParams) -> Result<Page<EndpointRow>> {
    Select::new(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM callback_endpoints WHERE status <> 'deleted'"
    ))
    .and("app_id = ?", Arg::Text(app.to_owned()))
    .page(db.reader(), params)
    .await
}

/// Sets an endpoint's status (`enabled`, `disabled`, `deleted`); enabling forgets
/// its failures.
pub async fn set_status(
    db: &Db,
    app: &str,
    id: &str,
    status: &str,
    reason: Option<&str>,
) -> Result<()> {
    let mut w = db.autocommit().await?;
    let n = sqlx::query(
        "UPDATE callback_endpoints SET status = $3, disabled_reason = $4, \
             failing_since = CASE WHEN $3 = 'enabled' THEN NULL ELSE failing_since END, updated = $5 \
         WHERE app_id = $1 AND id = $2 AND status <> 'deleted'",
    )
    .bind(app)
    .bind(id)
    .bind(status)
    .bind(reason)
    .bind(now())
    .execute(&mut *w)
    .await?
    .rows_affected();
    w.commit().await?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// A new secret; the old one stays valid (signatures carry both) until `previous_expires`.
pub async fn rotate_secret(
    db: &Db,
    app: &str,
    id: &str,
    sealed: &str,
    previous_expires: i64,
) -> Result<()> {
    let mut w = db.autocommit().await?;
    let n = sqlx::query(
        "UPDATE callback_endpoints SET previous_secret_sealed = secret_sealed, previous_secret_expires = $4, \
             secret_sealed = $3, updated = $5 \
         WHERE app_id = $1 AND id = $2 AND status <> 'deleted'",
    )
    .bind(app)
    .bind(id)
    .bind(sealed)
    .bind(previous_expires)
    .bind(now())
    .execute(&mut *w)
    .await?
    .rows_affected();
    w.commit().await?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Disables an enabled endpoint that kept failing and stops its pending deliveries,
/// in the caller's transaction. Returns the endpoint if this call disabled it (so one
/// node, not every node that noticed, tells the app).
pub async fn disable_failing(
    conn: &mut Conn,
    endpoint: &str,
    reason: &str,
) -> Result<Option<EndpointRow>> {
    let n = sqlx::query(
        "UPDATE callback_endpoints SET status = 'disabled', disabled_reason = $2, updated = $3 \
         WHERE id = $1 AND status = 'enabled'",
    )
    .bind(endpoint)
    .bind(reason)
    .bind(now())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(None);
    }
    sqlx::query("UPDATE deliveries SET status = 'failed', last_error = 'endpoint disabled' WHERE endpoint_id = $1 AND status = 'pending'")
        .bind(endpoint)
        .execute(&mut *conn)
        .await?;
    Ok(sqlx::query_as::<_, EndpointRow>(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM callback_endpoints WHERE id = $1"
    ))
    .bind(endpoint)
    .fetch_optional(&mut *conn)
    .await?)
}
