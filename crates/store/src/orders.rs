//! Orders: what is being paid for. Totals are computed by the server, never sent by a
//! client; `amount_paid` and `amount_refunded` follow the order's payments.

use sqlx::{Any, Executor};

use crate::db::lock_clause;
use crate::page::{Arg, Select};
use crate::{now, Conn, Db, ListParams, Page, Result, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderRow {
    pub id: String,
    pub app_id: String,
    pub customer_id: Option<String>,
    pub currency: String,
    pub amount_total: i64,
    pub amount_paid: i64,
    pub amount_refunded: i64,
    pub status: String,
    /// JSON array of the line items as sold (name, unit amount, quantity, product).
    pub line_items: String,
    pub metadata: String,
    /// Empty: an order's client secret is derived from the master key when asked for
    /// (`service::orders::client_secret`). Orders stored before that kept theirs here.
    pub client_secret: String,
    pub subscription_id: Option<String>,
    /// For a recurring charge: the provider's invoice it pays.
    pub provider_invoice_id: Option<String>,
    pub created: i64,
    pub updated: i64,
}

const COLUMNS: &str =
    "id, app_id, customer_id, currency, amount_total, amount_paid, amount_refunded, status, \
    line_items, metadata, client_secret, subscription_id, provider_invoice_id, created, updated";

pub async fn insert<'e, E: Executor<'e, Database = Any>>(e: E, o: &OrderRow) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO orders ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    ))
    .bind(&o.id)
    .bind(&o.app_id)
    .bind(&o.customer_id)
    .bind(&o.currency)
    .bind(o.amount_total)
    .bind(o.amount_paid)
    .bind(o.amount_refunded)
    .bind(&o.status)
    .bind(&o.line_items)
    .bind(&o.metadata)
    .bind(&o.client_secret)
    .bind(&o.subscription_id)
    .bind(&o.provider_invoice_id)
    .bind(o.created)
    .bind(o.updated)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(
    e: E,
    app: &str,
    id: &str,
) -> Result<OrderRow> {
    sqlx::query_as::<_, OrderRow>(&format!(
        "SELECT {COLUMNS} FROM orders WHERE app_id = $1 AND id = $2"
    ))
    .bind(app)
    .bind(id)
    .fetch_optional(e)
    .await?
    .ok_or(StoreError::NotFound)
}

/// Reads the order for update inside a transaction.
pub async fn lock(conn: &mut Conn, app: &str, id: &str) -> Result<OrderRow> {
    let sql = format!(
        "SELECT {COLUMNS} FROM orders WHERE app_id = $1 AND id = $2{}",
        lock_clause(conn)
    );
    sqlx::query_as::<_, OrderRow>(&sql)
        .bind(app)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound)
}

pub async fn set_amounts(
    conn: &mut Conn,
    app: &str,
    id: &str,
    paid: i64,
    refunded: i64,
    status: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE orders SET amount_paid = $3, amount_refunded = $4, status = $5, updated = $6 WHERE app_id = $1 AND id = $2",
    )
    .bind(app)
    .bind(id)
    .bind(paid)
    .bind(refunded)
    .bind(status)
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
) -> Result<Page<OrderRow>> {
    Select::new(&format!("SELECT {COLUMNS} FROM orders WHERE 1 = 1"))
        .and("app_id = ?", Arg::Text(app.to_owned()))
        .and_opt("customer_id = ?", customer.map(|c| Arg::Text(c.to_owned())))
        .and_opt("status = ?", status.map(|s| Arg::Text(s.to_owned())))
        .created(created)
        .page(db.reader(), params)
        .await
}

/// The order paying a provider invoice, if there is one yet.
pub async fn by_invoice(conn: &mut Conn, app: &str, invoice: &str) -> Result<Option<OrderRow>> {
    Ok(sqlx::query_as::<_, OrderRow>(&format!(
        "SELECT {COLUMNS} FROM orders WHERE app_id = $1 AND provider_invoice_id = $2"
    ))
    .bind(app)
    .bind(invoice)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Marks an order as paying a provider invoice (the first invoice of a subscription
/// started by checkout is paid by that checkout's order).
pub async fn set_invoice(
    conn: &mut Conn,
    app: &str,
    id: &str,
    invoice: &str,
    subscription: Option<&str>,
) -> Result<()> {
    sqlx::query("UPDATE orders SET provider_invoice_id = $3, subscription_id = COALESCE($4, subscription_id) WHERE app_id = $1 AND id = $2")
        .bind(app)
        .bind(id)
        .bind(invoice)
        .bind(subscription)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
