//! The catalog. Deleting a product archives it (`deleted = 1`): orders keep their own
//! copy of what was sold, and a provider price id may be imported again.

use crate::page::{Arg, Select};
use crate::{now, Db, ListParams, Page, Result, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProductRow {
    pub id: String,
    pub app_id: String,
    pub name: String,
    pub description: Option<String>,
    pub unit_amount: i64,
    pub currency: String,
    pub recurring_interval: Option<String>,
    pub recurring_interval_count: Option<i64>,
    pub provider_product_id: Option<String>,
    pub provider_price_id: Option<String>,
    pub active: i64,
    /// JSON object of string values.
    pub metadata: String,
    pub created: i64,
    pub updated: i64,
}

const COLUMNS: &str = "id, app_id, name, description, unit_amount, currency, recurring_interval, \
    recurring_interval_count, provider_product_id, provider_price_id, active, metadata, created, updated";

pub async fn insert(db: &Db, p: &ProductRow) -> Result<()> {
    let mut w = db.autocommit().await?;
    sqlx::query(&format!(
        "INSERT INTO products ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    ))
    .bind(&p.id)
    .bind(&p.app_id)
    .bind(&p.name)
    .bind(&p.description)
    .bind(p.unit_amount)
    .bind(&p.currency)
    .bind(&p.recurring_interval)
    .bind(p.recurring_interval_count)
    .bind(&p.provider_product_id)
    .bind(&p.provider_price_id)
    .bind(p.active)
    .bind(&p.metadata)
    .bind(p.created)
    .bind(p.updated)
    .execute(&mut *w)
    .await?;
    w.commit().await?;
    Ok(())
}

pub async fn get(db: &Db, app: &str, id: &str) -> Result<ProductRow> {
    sqlx::query_as::<_, ProductRow>(&format!(
        "SELECT {COLUMNS} FROM products WHERE app_id = $1 AND id = $2 AND deleted = 0"
    ))
    .bind(app)
    .bind(id)
    .fetch_optional(db.reader())
    .await?
    .ok_or(StoreError::NotFound)
}

/// Lists an app's products; `active` filters on the flag when given.
pub async fn list(
    db: &Db,
    app: &str,
    active: Option<bool>,
    params: &ListParams,
) -> Result<Page<ProductRow>> {
    Select::new(&format!("SELECT {COLUMNS} FROM products WHERE deleted = 0"))
        .and("app_id = ?", Arg::Text(app.to_owned()))
        .and_opt("active = ?", active.map(|a| Arg::Int(i64::from(a))))
        .page(db.reader(), params)
        .await
}

/// Reads the product, lets `change` edit it (and refuse, with its own error), and
/// writes it back, inside one write transaction so two edits never interleave.
pub async fn update<E: From<StoreError>>(
    db: &Db,
    app: &str,
    id: &str,
    change: impl FnOnce(&mut ProductRow) -> Result<(), E>,
) -> Result<ProductRow, E> {
    let mut tx = db.begin().await?;
    let mut p = sqlx::query_as::<_, ProductRow>(&format!(
        "SELECT {COLUMNS} FROM products WHERE app_id = $1 AND id = $2 AND deleted = 0{}",
        db.for_update()
    ))
    .bind(app)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(StoreError::from)?
    .ok_or(StoreError::NotFound)?;
    change(&mut p)?;
    p.updated = now();
    sqlx::query(
        "UPDATE products SET name = $3, description = $4, unit_amount = $5, currency = $6, \
             recurring_interval = $7, recurring_interval_count = $8, provider_product_id = $9, \
             provider_price_id = $10, active = $11, metadata = $12, updated = $13 \
         WHERE app_id = $1 AND id = $2",
    )
    .bind(app)
    .bind(id)
    .bind(&p.name)
    .bind(&p.description)
    .bind(p.unit_amount)
    .bind(&p.currency)
    .bind(&p.recurring_interval)
    .bind(p.recurring_interval_count)
    .bind(&p.provider_product_id)
    .bind(&p.provider_price_id)
    .bind(p.active)
    .bind(&p.metadata)
    .bind(p.updated)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::from)?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(p)
}

pub async fn delete(db: &Db, app: &str, id: &str) -> Result<()> {
    let mut w = db.autocommit().await?;
    let r = sqlx::query(
        "UPDATE products SET deleted = 1, active = 0, updated = $3 WHERE app_id = $1 AND id = $2 AND deleted = 0",
    )
    .bind(app)
    .bind(id)
    .bind(now())
    .execute(&mut *w)
    .await?;
    w.commit().await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Counts an app's live products (the demo seeding checks it).
pub async fn count(db: &Db, app: &str) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM products WHERE app_id = $1 AND deleted = 0")
            .bind(app)
            .fetch_one(db.reader())
            .await?,
    )
}

/// The live product standing for a provider price.
pub async fn by_provider_price(db: &Db, app: &str, price: &str) -> Result<ProductRow> {
    sqlx::query_as::<_, ProductRow>(&format!(
        "SELECT {COLUMNS} FROM products WHERE app_id = $1 AND provider_price_id = $2 AND deleted = 0"
    ))
    .bind(app)
    .bind(price)
    .fetch_optional(db.reader())
    .await?
    .ok_or(StoreError::NotFound)
}

/// A product read inside a transaction (archived ones too: an order may name one).
pub async fn get_in<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    e: E,
    app: &str,
    id: &str,
) -> Result<ProductRow> {
    sqlx::query_as::<_, ProductRow>(&format!(
        "SELECT {COLUMNS} FROM products WHERE app_id = $1 AND id = $2"
    ))
    .bind(app)
    .bind(id)
    .fetch_optional(e)
    .await?
    .ok_or(StoreError::NotFound)
}
