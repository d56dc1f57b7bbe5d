//! API keys, stored only as SHA-256 hashes.

use crate::page::{Arg, Select};
use crate::{now, Conn, Db, ListParams, Page, Result, StoreError};

/// A key as listed: never its secret, never its hash.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub id: String,
    pub app_id: Option<String>,
    pub role: String,
    /// Extra permissions granted beyond the role's, comma-separated.
    pub permissions: String,
    pub redacted: String,
    pub created: i64,
    pub revoked: Option<i64>,
}

/// What authentication learns from a key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyAuth {
    pub id: String,
    pub app_id: Option<String>,
    pub role: String,
    pub permissions: String,
    pub environment: Option<String>,
}

const COLUMNS: &str = "id, app_id, role, permissions, redacted, created, revoked";

pub(crate) async fn insert(tx: &mut Conn, k: &KeyRow, hash: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, app_id, role, permissions, key_hash, redacted, created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&k.id)
    .bind(&k.app_id)
    .bind(&k.role)
    .bind(&k.permissions)
    .bind(hash)
    .bind(&k.redacted)
    .bind(k.created)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub async fn create_key(db: &Db, k: &KeyRow, hash: &str) -> Result<()> {
    let mut tx = db.begin().await?;
    insert(&mut tx, k, hash).await?;
    tx.commit().await?;
    Ok(())
}

/// The live (unrevoked) key with this hash, with its app's environment.
pub async fn authenticate(db: &Db, hash: &str) -> Result<Option<KeyAuth>> {
    Ok(sqlx::query_as::<_, KeyAuth>(
        "SELECT k.id, k.app_id, k.role, k.permissions, a.environment \
         FROM api_keys k LEFT JOIN apps a ON a.id = k.app_id \
         WHERE k.key_hash = $1 AND k.revoked IS NULL",
    )
    .bind(hash)
    .fetch_optional(db.reader())
    .await?)
}

/// Revokes a key. `app` limits it to one app's keys: another app's key is not found.
pub async fn revoke(db: &Db, app: Option<&str>, key_id: &str) -> Result<KeyRow> {
    let mut w = db.autocommit().await?;
    let mut row = Select::new(&format!("SELECT {COLUMNS} FROM api_keys WHERE 1 = 1"))
        .and("id = ?", Arg::Text(key_id.to_owned()))
        .and_opt("app_id = ?", app.map(|a| Arg::Text(a.to_owned())))
        .fetch_all::<KeyRow, _>(&mut *w)
        .await?
        .pop()
        .ok_or(StoreError::NotFound)?;
    if row.revoked.is_none() {
        let ts = now();
        sqlx::query("UPDATE api_keys SET revoked = $1 WHERE id = $2 AND revoked IS NULL")
            .bind(ts)
            .bind(key_id)
            .execute(&mut *w)
            .await?;
        row.revoked = Some(ts);
    }
    w.commit().await?;
    Ok(row)
}

pub async fn list_keys(db: &Db, app: &str, params: &ListParams) -> Result<Page<KeyRow>> {
    Select::new(&format!("SELECT {COLUMNS} FROM api_keys WHERE 1 = 1"))
        .and("app_id = ?", Arg::Text(app.to_owned()))
        .page(db.reader(), params)
        .await
}
