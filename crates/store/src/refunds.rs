//! Refunds: one row per refund, ours or found at the provider.

use sqlx::{Any, Executor};

use crate::db::lock_clause;
use crate::page::{Arg, Select};
use crate::{now, Conn, Db, ListParams, Page, Result, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RefundRow {
    pub id: String,
    pub app_id: String,
    pub payment_id: String,
    pub order_id: String,
    pub amount: i64,
    pub currency: String,
    pub reason: Option<String>,
    /// `pending`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    pub failure_reason: Option<String>,
    pub provider_refund_id: Option<String>,
    pub refund_application_fee: i64,
    pub reverse_transfer: i64,
    /// `api` (made through paybridge), `provider` (found in the provider's events) or
    /// `surplus` (paybridge giving back money that paid an order twice).
    pub source: String,
    pub metadata: String,
    pub created: i64,
    pub updated: i64,
}

const COLUMNS: &str = "id, app_id, payment_id, order_id, amount, currency, reason, status, failure_reason, \
    provider_refund_id, refund_application_fee, reverse_transfer, source, metadata, created, updated";

pub async fn insert<'e, E: Executor<'e, Database = Any>>(e: E, r: &RefundRow) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO refunds ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    ))
    .bind(&r.id)
    .bind(&r.app_id)
    .bind(&r.payment_id)
    .bind(&r.order_id)
    .bind(r.amount)
    .bind(&r.currency)
    .bind(&r.reason)
    .bind(&r.status)
    .bind(&r.failure_reason)
    .bind(&r.provider_refund_id)
    .bind(r.refund_application_fee)
    .bind(r.reverse_transfer)
    .bind(&r.source)
    .bind(&r.metadata)
    .bind(r.created)
    .bind(r.updated)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(
    e: E,
    app: &str,
    id: &str,
) -> Result<RefundRow> {
    sqlx::query_as::<_, RefundRow>(&format!(
        "SELECT {COLUMNS} FROM refunds WHERE app_id = $1 AND id = $2"
    ))
    .bind(app)
    .bind(id)
    .fetch_optional(e)
    .await?
    .ok_or(StoreError::NotFound)
}

/// Locks a refund named by our id or the provider's. On PostgreSQL its payment (with
/// the other payments of its order, `payments::lock_of_order`) is locked first: money
/// rows are locked payments before refunds, so a webhook applying a refund whose
/// payment it had not loaded cannot deadlock with our own answer or failure path
/// (`service::refunds`), which lock the payment first.
pub async fn lock_by_refs(
    conn: &mut Conn,
    app: &str,
    id: Option<&str>,
    provider: Option<&str>,
) -> Result<Option<RefundRow>> {
    let lock = lock_clause(conn);
    let postgres = crate::db::backend_of(conn) == crate::Backend::Postgres;
    for (column, value) in [("id", id), ("provider_refund_id", provider)] {
        let Some(value) = value else { continue };
        if postgres {
            // Its order, unlocked (a refund's order never changes), to lock the
            // payments first.
            let order: Option<String> = sqlx::query_scalar(&format!(
                "SELECT order_id FROM refunds WHERE app_id = $1 AND {column} = $2"
            ))
            .bind(app)
            .bind(value)
            .fetch_optional(&mut *conn)
            .await?;
            let Some(order) = order else { continue };
            crate::payments::lock_of_order(conn, app, &order).await?;
        }
        let sql =
            format!("SELECT {COLUMNS} FROM refunds WHERE app_id = $1 AND {column} = $2{lock}");
        if let Some(r) = sqlx::query_as::<_, RefundRow>(&sql)
            .bind(app)
            .bind(value)
            .fetch_optional(&mut *conn)
            .await?
        {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// Writes a refund's status, failure, provider id and amount (the provider's, when it
/// reports another than asked for).
pub async fn save(conn: &mut Conn, r: &RefundRow) -> Result<()> {
    sqlx::query(
        "UPDATE refunds SET status = $3, failure_reason = $4, provider_refund_id = $5, updated = $6, amount = $7 \
         WHERE app_id = $1 AND id = $2",
    )
    .bind(&r.app_id)
    .bind(&r.id)
    .bind(&r.status)
    .bind(&r.failure_reason)
    .bind(&r.provider_refund_id)
    .bind(now())
    .bind(r.amount)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The total of a payment's succeeded refunds.
pub async fn succeeded_total(conn: &mut Conn, app: &str, payment: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM refunds WHERE app_id = $1 AND payment_id = $2 AND status = 'succeeded'",
    )
    .bind(app)
    .bind(payment)
    .fetch_one(&mut *conn)
    .await?)
}

pub async fn list(
    db: &Db,
    app: &str,
    payment: Option<&str>,
    params: &ListParams,
) -> Result<Page<RefundRow>> {
    Select::new(&format!("SELECT {COLUMNS} FROM refunds WHERE 1 = 1"))
        .and("app_id = ?", Arg::Text(app.to_owned()))
        .and_opt("payment_id = ?", payment.map(|p| Arg::Text(p.to_owned())))
        .page(db.reader(), params)
        .await
}

/// `of_order`'s condition: the order's index (`refunds_order`, migration 0020), with the
/// app compared as `app_id || ''` so that SQLite's planner does not walk
/// `refunds_app (app_id, id)`, every refund of the app, for the order by id (as with
/// `payments::OF_ORDER_SQL`; a test asserts the plan).
const OF_ORDER_SQL: &str = "WHERE app_id || '' = $1 AND order_id = $2 ORDER BY id";

pub async fn of_order<'e, E: Executor<'e, Database = Any>>(
    e: E,
    app: &str,
    order: &str,
) -> Result<Vec<RefundRow>> {
    Ok(
        sqlx::query_as::<_, RefundRow>(&format!("SELECT {COLUMNS} FROM refunds {OF_ORDER_SQL}"))
            .bind(app)
            .bind(order)
            .fetch_all(e)
            .await?,
    )
}

/// Refunds of any app still pending since before `updated_before` (for the reconciler),
/// and surplus refunds not sent to the provider yet, whatever their age.
pub async fn stuck(db: &Db, updated_before: i64, limit: i64) -> Result<Vec<RefundRow>> {
    Ok(sqlx::query_as::<_, RefundRow>(&format!(
        "SELECT {COLUMNS} FROM refunds WHERE status = 'pending' \
             AND (updated < $1 OR (source = 'surplus' AND provider_refund_id IS NULL)) \
         ORDER BY updated LIMIT $2"
    ))
    .bind(updated_before)
    .bind(limit)
    .fetch_all(db.reader())
    .await?)
}

#[cfg(test)]
mod tests {
    /// An order's refunds are found through the order's index on SQLite, not by
    /// reading every refund of the app.
    #[tokio::test]
    async fn an_orders_refunds_are_found_by_the_order_index_on_sqlite() {
        crate::db::assert_plan(
            &format!("SELECT id FROM refunds {}", super::OF_ORDER_SQL),
            &["refunds_order"],
            &["refunds_app"],
        )
        .await;
    }
}
