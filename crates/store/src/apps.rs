//! Apps (tenants). An app and its first keys are created in one transaction.

use crate::keys::KeyRow;
use crate::page::Select;
use crate::{Db, ListParams, Page, Result, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AppRow {
    pub id: String,
    pub name: String,
    pub environment: String,
    pub demo: i64,
    pub created: i64,
}

const COLUMNS: &str = "id, name, environment, demo, created";

/// Stores the app with its keys (hashes only), all or nothing.
pub async fn create_app(
    db: &Db,
    app: &AppRow,
    keys: &[KeyRow],
    key_hashes: &[String],
) -> Result<()> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO apps (id, name, environment, demo, created) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&app.id)
    .bind(&app.name)
    .bind(&app.environment)
    .bind(app.demo)
    .bind(app.created)
    .execute(&mut *tx)
    .await?;
    for (k, hash) in keys.iter().zip(key_hashes) {
        crate::keys::insert(&mut tx, k, hash).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub async fn get_app(db: &Db, id: &str) -> Result<AppRow> {
    sqlx::query_as::<_, AppRow>(&format!("SELECT {COLUMNS} FROM apps WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.reader())
        .await?
        .ok_or(StoreError::NotFound)
}

pub async fn list_apps(db: &Db, params: &ListParams) -> Result<Page<AppRow>> {
    Select::new(&format!("SELECT {COLUMNS} FROM apps WHERE 1 = 1"))
        .page(db.reader(), params)
        .await
}

pub async fn find_demo_app(db: &Db) -> Result<Option<AppRow>> {
    Ok(sqlx::query_as::<_, AppRow>(&format!(
        "SELECT {COLUMNS} FROM apps WHERE demo = 1 ORDER BY id LIMIT 1"
    ))
    .fetch_optional(db.reader())
    .await?)
}

pub async fn exists(db: &Db, id: &str) -> Result<bool> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM apps WHERE id = $1")
        .bind(id)
        .fetch_one(db.reader())
        .await?;
    Ok(n > 0)
}
