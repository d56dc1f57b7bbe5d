//! Installation-wide settings (the generated root key's hash, the demo app's id).

use crate::{Db, Result};

pub async fn get(db: &Db, name: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(db.reader())
            .await?,
    )
}

/// Sets `name` only if it has no value yet; returns whether this call set it. Two
/// nodes starting together thus agree on one value.
pub async fn set_if_absent(db: &Db, name: &str, value: &str) -> Result<bool> {
    let mut w = db.autocommit().await?;
    let r = sqlx::query(
        "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(value)
    .execute(&mut *w)
    .await?;
    w.commit().await?;
    Ok(r.rows_affected() == 1)
}
