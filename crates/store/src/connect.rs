//! Stripe Connect: the app's connected accounts and its transfers to them.

use sqlx::{Any, Executor};

use crate::page::{Arg, Select};
use crate::{now, Db, ListParams, Page, Result, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRow {
    pub id: String,
    pub app_id: String,
    pub provider_account_id: String,
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub country: Option<String>,
    pub deleted: i64,
    pub created: i64,
    pub updated: i64,
}

const ACCOUNT_COLUMNS: &str =
    "id, app_id, provider_account_id, email, external_id, country, deleted, created, updated";

pub async fn insert_account<'e, E: Executor<'e, Database = Any>>(
    e: E,
    a: &AccountRow,
) -> Result<()> {
    sqlx::query(&format!("INSERT INTO connected_accounts ({ACCOUNT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"))
        .bind(&a.id)
        .bind(&a.app_id)
        .bind(&a.provider_account_id)
        .bind(&a.email)
        .bind(&a.external_id)
        .bind(&a.country)
        .bind(a.deleted)
        .bind(a.created)
        .bind(a.updated)
        .execute(e)
        .await?;
    Ok(())
}

pub async fn account(db: &Db, app: &str, id: &str) -> Result<AccountRow> {
    sqlx::query_as::<_, AccountRow>(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM connected_accounts WHERE app_id = $1 AND id = $2 AND deleted = 0"
    ))
    .bind(app)
    .bind(id)
    .fetch_optional(db.reader())
    .await?
    .ok_or(StoreError::NotFound)
}

/// The app's (undeleted) account with this provider id (`acct_…`).
pub async fn account_by_provider_id(db: &Db, app: &str, provider_id: &str) -> Result<AccountRow> {
    sqlx::query_as::<_, AccountRow>(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM connected_accounts WHERE app_id = $1 AND provider_account_id = $2 AND deleted = 0"
    ))
    .bind(app)
    .bind(provider_id)
    .fetch_optional(db.reader())
    .await?
    .ok_or(StoreError::NotFound)
}

pub async fn delete_account(db: &Db, app: &str, id: &str) -> Result<()> {
    let mut w = db.autocommit().await?;
    let n = sqlx::query("UPDATE connected_accounts SET deleted = 1, updated = $3 WHERE app_id = $1 AND id = $2 AND deleted = 0")
        .bind(app)
        .bind(id)
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

pub async fn list_accounts(db: &Db, app: &str, params: &ListParams) -> Result<Page<AccountRow>> {
    Select::new(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM connected_accounts WHERE deleted = 0"
    ))
    .and("app_id = ?", Arg::Text(app.to_owned()))
    .page(db.reader(), params)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TransferRow {
    pub id: String,
    pub app_id: String,
    /// The provider's connected account (`acct_…`).
    pub destination: String,
    pub amount: i64,
    pub currency: String,
    pub provider_transfer_id: Option<String>,
    /// `pending` until the provider answers, then `succeeded` or `failed`.
    pub status: String,
    pub metadata: String,
    pub created: i64,
}

const TRANSFER_COLUMNS: &str =
    "id, app_id, destination, amount, currency, provider_transfer_id, status, metadata, created";

pub async fn insert_transfer<'e, E: Executor<'e, Database = Any>>(
    e: E,
    t: &TransferRow,
) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO transfers ({TRANSFER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ))
    .bind(&t.id)
    .bind(&t.app_id)
    .bind(&t.destination)
    .bind(t.amount)
    .bind(&t.currency)
    .bind(&t.provider_transfer_id)
    .bind(&t.status)
    .bind(&t.metadata)
    .bind(t.created)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn finish_transfer(
    db: &Db,
    app: &str,
    id: &str,
    provider_id: Option<&str>,
    status: &str,
) -> Result<()> {
    let mut w = db.autocommit().await?;
    sqlx::query(
        "UPDATE transfers SET provider_transfer_id = $3, status = $4 WHERE app_id = $1 AND id = $2",
    )
    .bind(app)
    .bind(id)
    .bind(provider_id)
    .bind(status)
    .execute(&mut *w)
    .await?;
    w.commit().await?;
    Ok(())
}

pub async fn transfer(db: &Db, app: &str, id: &str) -> Result<TransferRow> {
    sqlx::query_as::<_, TransferRow>(&format!(
        "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE app_id = $1 AND id = $2"
    ))
    .bind(app)
    .bind(id)
    .fetch_optional(db.reader())
    .await?
    .ok_or(StoreError::NotFound)
}
