//! Subscriptions: a customer's recurring price, mirrored from the provider.

use sqlx::{Any, Executor};

use crate::db::lock_clause;
use crate::page::{Arg, Select};
use crate::{now, Conn, Db, ListParams, Page, Result, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SubscriptionRow {
    pub id: String,
    pub app_id: String,
    pub customer_id: Option<String>,
    pub product_id: Option<String>,
    pub provider_price_id: Option<String>,
    pub quantity: i64,
    pub unit_amount: i64,
    pub currency: String,
    pub status: String,
    /// When the provider reported `status` (unix seconds): older reports are ignored.
    pub status_at: i64,
    pub provider_subscription_id: Option<String>,
    pub current_period_start: Option<i64>,
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: i64,
    pub canceled_at: Option<i64>,
    pub checkout_id: Option<String>,
    pub metadata: String,
    pub created: i64,
    pub updated: i64,
}

const COLUMNS: &str = "id, app_id, customer_id, product_id, provider_price_id, quantity, unit_amount, currency, status, \
    status_at, provider_subscription_id, current_period_start, current_period_end, cancel_at_period_end, canceled_at, \
    checkout_id, metadata, created, updated";

pub async fn insert<'e, E: Executor<'e, Database = Any>>(e: E, s: &SubscriptionRow) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO subscriptions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
    ))
    .bind(&s.id)
    .bind(&s.app_id)
    .bind(&s.customer_id)
    .bind(&s.product_id)
    .bind(&s.provider_price_id)
    .bind(s.quantity)
    .bind(s.unit_amount)
    .bind(&s.currency)
    .bind(&s.status)
    .bind(s.status_at)
    .bind(&s.provider_subscription_id)
    .bind(s.current_period_start)
    .bind(s.current_period_end)
    .bind(s.cancel_at_period_end)
    .bind(s.canceled_at)
    .bind(&s.checkout_id)
    .bind(&s.metadata)
    .bind(s.created)
    .bind(s.updated)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(
    e: E,
    app: &str,
    id: &str,
) -> Result<SubscriptionRow> {
    sqlx::query_as::<_, SubscriptionRow>(&format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE app_id = $1 AND id = $2"
    ))
    .bind(app)
    .bind(id)
    .fetch_optional(e)
    .await?
    .ok_or(StoreError::NotFound)
}

/// Locks a subscription named by our id, the provider's, or the checkout that started it.
pub async fn lock_by_refs(
    conn: &mut Conn,
    app: &str,
    id: Option<&str>,
    provider: Option<&str>,
    checkout: Option<&str>,
) -> Result<Option<SubscriptionRow>> {
    let lock = lock_clause(conn);
    for (column, value) in [
        ("id", id),
        ("provider_subscription_id", provider),
        ("checkout_id", checkout),
    ] {
        let Some(value) = value else { continue };
        let sql = format!(
            "SELECT {COLUMNS} FROM subscriptions WHERE app_id = $1 AND {column} = $2{lock}"
        );
        if let Some(s) = sqlx::query_as::<_, SubscriptionRow>(&sql)
            .bind(app)
            .bind(value)
            .fetch_optional(&mut *conn)
            .await?
        {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

pub async fn save(conn: &mut Conn, s: &SubscriptionRow) -> Result<()> {
    sqlx::query(
        "UPDATE subscriptions SET status = $3, status_at = $4, provider_subscription_id = $5, current_period_start = $6, \
             current_period_end = $7, cancel_at_period_end = $8, canceled_at = $9, customer_id = $10, updated = $11 \
         WHERE app_id = $1 AND id = $2",
    )
    .bind(&s.app_id)
    .bind(&s.id)
    .bind(&s.status)
    .bind(s.status_at)
    .bind(&s.provider_subscription_id)
    .bind(s.current_period_start)
    .bind(s.current_period_end)
    .bind(s.cancel_at_period_end)
    .bind(s.canceled_at)
    .bind(&s.customer_id)
    .bind(now())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn list(
    db: &Db,
    app: &str,
    customer: Option<&str>,
    status: Option<&str>,
    created: &crate::Created,
    params: &ListParams,
) -> Result<Page<SubscriptionRow>> {
    Select::new(&format!("SELECT {COLUMNS} FROM subscriptions WHERE 1 = 1"))
        .and("app_id = ?", Arg::Text(app.to_owned()))
        .and_opt("customer_id = ?", customer.map(|c| Arg::Text(c.to_owned())))
        .and_opt("status = ?", status.map(|s| Arg::Text(s.to_owned())))
        .created(created)
        .page(db.reader(), params)
        .await
}
