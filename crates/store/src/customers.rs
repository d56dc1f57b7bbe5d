//! Customers (upserted on the app's `external_id`) and their saved cards.

use sqlx::{Any, Executor};

use crate::page::{Arg, Created, Select};
use crate::{now, Backend, Db, ListParams, Page, Result, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CustomerRow {
    pub id: String,
    pub app_id: String,
    pub external_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub metadata: String,
    pub provider_customer_id: Option<String>,
    pub default_payment_method: Option<String>,
    pub created: i64,
    pub updated: i64,
}

const COLUMNS: &str = "id, app_id, external_id, email, name, metadata, provider_customer_id, \
    default_payment_method, created, updated";

/// Inserts the customer, or updates email, name and metadata of the one with the same
/// `external_id`; returns the stored row and whether it was new.
pub async fn upsert(db: &Db, c: &CustomerRow) -> Result<(CustomerRow, bool)> {
    let mut w = db.autocommit().await?;
    let row = sqlx::query_as::<_, CustomerRow>(&format!(
        "INSERT INTO customers ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (app_id, external_id) DO UPDATE SET \
             email = COALESCE(excluded.email, customers.email), \
             name = COALESCE(excluded.name, customers.name), \
             metadata = excluded.metadata, updated = excluded.updated \
         RETURNING {COLUMNS}"
    ))
    .bind(&c.id)
    .bind(&c.app_id)
    .bind(&c.external_id)
    .bind(&c.email)
    .bind(&c.name)
    .bind(&c.metadata)
    .bind(&c.provider_customer_id)
    .bind(&c.default_payment_method)
    .bind(c.created)
    .bind(c.updated)
    .fetch_one(&mut *w)
    .await?;
    w.commit().await?;
    let new = row.id == c.id;
    Ok((row, new))
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(
    e: E,
    app: &str,
    id: &str,
) -> Result<CustomerRow> {
    sqlx::query_as::<_, CustomerRow>(&format!(
        "SELECT {COLUMNS} FROM customers WHERE app_id = $1 AND id = $2"
    ))
    .bind(app)
    .bind(id)
    .fetch_optional(e)
    .await?
    .ok_or(StoreError::NotFound)
}

pub async fn find_by_provider<'e, E: Executor<'e, Database = Any>>(
    e: E,
    app: &str,
    provider_id: &str,
) -> Result<Option<CustomerRow>> {
    Ok(sqlx::query_as::<_, CustomerRow>(&format!(
        "SELECT {COLUMNS} FROM customers WHERE app_id = $1 AND provider_customer_id = $2"
    ))
    .bind(app)
    .bind(provider_id)
    .fetch_optional(e)
    .await?)
}

/// A list of customers, narrowed.
#[derive(Debug, Default)]
pub struct Filter<'a> {
    pub external_id: Option<&'a str>,
    /// The whole email, any case.
    pub email: Option<&'a str>,
    /// The beginning of the email, any case.
    pub email_prefix: Option<&'a str>,
    pub created: Created,
}

/// The indexed expression customers are found by email with (`customers_email`):
/// the lowercased email, in byte order on PostgreSQL so that a prefix's range holds
/// exactly the emails starting with it.
pub(crate) fn email_key(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "lower(email)",
        Backend::Postgres => "(lower(email) COLLATE \"C\")",
    }
}

/// Above every character a prefix can be followed by: `[p, p + MAX)` holds exactly
/// the strings that start with `p`, in byte order.
const AFTER_ALL: char = char::MAX;

pub async fn list(
    db: &Db,
    app: &str,
    f: &Filter<'_>,
    params: &ListParams,
) -> Result<Page<CustomerRow>> {
    let key = email_key(db.backend);
    Select::new(&format!("SELECT {COLUMNS} FROM customers WHERE 1 = 1"))
        .and("app_id = ?", Arg::Text(app.to_owned()))
        .and_opt(
            "external_id = ?",
            f.external_id.map(|e| Arg::Text(e.to_owned())),
        )
        .and_opt(
            &format!("{key} = lower(?)"),
            f.email.map(|e| Arg::Text(e.to_owned())),
        )
        .and_each(
            &format!("{key} >= lower(?) AND {key} < lower(?)"),
            f.email_prefix.map(|p| {
                vec![
                    Arg::Text(p.to_owned()),
                    Arg::Text(format!("{p}{AFTER_ALL}")),
                ]
            }),
        )
        .created(&f.created)
        .page(db.reader(), params)
        .await
}

pub async fn set_provider_id(db: &Db, app: &str, id: &str, provider_id: &str) -> Result<()> {
    let mut w = db.autocommit().await?;
    sqlx::query("UPDATE customers SET provider_customer_id = $3, updated = $4 WHERE app_id = $1 AND id = $2")
        .bind(app)
        .bind(id)
        .bind(provider_id)
        .bind(now())
        .execute(&mut *w)
        .await?;
    w.commit().await?;
    Ok(())
}

pub async fn set_default_payment_method<'e, E: Executor<'e, Database = Any>>(
    e: E,
    app: &str,
    id: &str,
    payment_method: Option<&str>,
) -> Result<()> {
    sqlx::query("UPDATE customers SET default_payment_method = $3, updated = $4 WHERE app_id = $1 AND id = $2")
        .bind(app)
        .bind(id)
        .bind(payment_method)
        .bind(now())
        .execute(e)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CardRow {
    pub id: String,
    pub app_id: String,
    pub customer_id: String,
    pub provider_payment_method_id: String,
    pub brand: Option<String>,
    pub last4: Option<String>,
    pub exp_month: Option<i64>,
    pub exp_year: Option<i64>,
    pub detached: i64,
    pub created: i64,
}

const CARD_COLUMNS: &str =
    "id, app_id, customer_id, provider_payment_method_id, brand, last4, exp_month, exp_year, detached, created";

/// Records a card (again attached if it was detached); returns the stored row.
pub async fn save_card<'e, E: Executor<'e, Database = Any>>(e: E, c: &CardRow) -> Result<CardRow> {
    Ok(sqlx::query_as::<_, CardRow>(&format!(
        "INSERT INTO payment_methods ({CARD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9) \
         ON CONFLICT (app_id, provider_payment_method_id) DO UPDATE SET detached = 0, \
             customer_id = excluded.customer_id, \
             brand = COALESCE(excluded.brand, payment_methods.brand), \
             last4 = COALESCE(excluded.last4, payment_methods.last4), \
             exp_month = COALESCE(excluded.exp_month, payment_methods.exp_month), \
             exp_year = COALESCE(excluded.exp_year, payment_methods.exp_year) \
         RETURNING {CARD_COLUMNS}"
    ))
    .bind(&c.id)
    .bind(&c.app_id)
    .bind(&c.customer_id)
    .bind(&c.provider_payment_method_id)
    .bind(&c.brand)
    .bind(&c.last4)
    .bind(c.exp_month)
    .bind(c.exp_year)
    .bind(c.created)
    .fetch_one(e)
    .await?)
}

pub async fn cards(db: &Db, app: &str, customer: &str) -> Result<Vec<CardRow>> {
    Ok(sqlx::query_as::<_, CardRow>(&format!(
        "SELECT {CARD_COLUMNS} FROM payment_methods WHERE app_id = $1 AND customer_id = $2 AND detached = 0 ORDER BY id DESC"
    ))
    .bind(app)
    .bind(customer)
    .fetch_all(db.reader())
    .await?)
}

pub async fn card(db: &Db, app: &str, customer: &str, id: &str) -> Result<CardRow> {
    sqlx::query_as::<_, CardRow>(&format!(
        "SELECT {CARD_COLUMNS} FROM payment_methods WHERE app_id = $1 AND customer_id = $2 AND id = $3 AND detached = 0"
    ))
    .bind(app)
    .bind(customer)
    .bind(id)
    .fetch_optional(db.reader())
    .await?
    .ok_or(StoreError::NotFound)
}

/// Marks a card detached, and clears it as the customer's default if it was.
pub async fn detach_card(db: &Db, app: &str, customer: &str, id: &str) -> Result<()> {
    let mut tx = db.begin().await?;
    let n = sqlx::query("UPDATE payment_methods SET detached = 1 WHERE app_id = $1 AND customer_id = $2 AND id = $3 AND detached = 0")
        .bind(app)
        .bind(customer)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    sqlx::query(
        "UPDATE customers SET default_payment_method = NULL, updated = $4 \
         WHERE app_id = $1 AND id = $2 AND default_payment_method = $3",
    )
    .bind(app)
    .bind(customer)
    .bind(id)
    .bind(now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
