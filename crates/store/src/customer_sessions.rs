//! Customer sessions: short-lived, customer-scoped secrets that a server key mints for
//! a browser. Only the secret's hash is stored.

use crate::{Db, Result};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CustomerSessionRow {
    pub id: String,
    pub app_id: String,
    pub customer_id: String,
    pub expires_at: i64,
    pub created: i64,
}

pub async fn insert(db: &Db, s: &CustomerSessionRow, secret_hash: &str) -> Result<()> {
    let mut w = db.autocommit().await?;
    sqlx::query(
        "INSERT INTO customer_sessions (id, app_id, customer_id, secret_hash, expires_at, created) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&s.id)
    .bind(&s.app_id)
    .bind(&s.customer_id)
    .bind(secret_hash)
    .bind(s.expires_at)
    .bind(s.created)
    .execute(&mut *w)
    .await?;
    w.commit().await?;
    Ok(())
}

/// The app's session with this secret hash that has not expired at `now`.
pub async fn live(
    db: &Db,
    app: &str,
    secret_hash: &str,
    now: i64,
) -> Result<Option<CustomerSessionRow>> {
    Ok(sqlx::query_as::<_, CustomerSessionRow>(
        "SELECT id, app_id, customer_id, expires_at, created FROM customer_sessions \
         WHERE secret_hash = $1 AND app_id = $2 AND expires_at > $3",
    )
    .bind(secret_hash)
    .bind(app)
    .bind(now)
    .fetch_optional(db.reader())
    .await?)
}

/// Removes sessions that expired before `before`.
pub async fn purge(db: &Db, before: i64) -> Result<u64> {
    let mut w = db.autocommit().await?;
    let n = sqlx::query("DELETE FROM customer_sessions WHERE expires_at < $1")
        .bind(before)
        .execute(&mut *w)
        .await?
        .rows_affected();
    w.commit().await?;
    Ok(n)
}
