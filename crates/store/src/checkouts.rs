//! Checkout sessions: a hosted page to pay one payment of an order, single use, with
//! an expiry.

use sqlx::{Any, Executor};

use crate::db::lock_clause;
use crate::page::Params;
use crate::{now, Conn, Db, Result, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CheckoutRow {
    pub id: String,
    pub app_id: String,
    pub order_id: String,
    pub payment_id: String,
    pub customer_id: Option<String>,
    pub mode: String,
    pub status: String,
    pub url: Option<String>,
    pub success_url: String,
    pub cancel_url: String,
    pub save_card: i64,
    pub expires_at: i64,
    pub provider_session_id: Option<String>,
    pub created: i64,
    pub updated: i64,
}

const COLUMNS: &str =
    "id, app_id, order_id, payment_id, customer_id, mode, status, url, success_url, cancel_url, \
    save_card, expires_at, provider_session_id, created, updated";

pub async fn insert<'e, E: Executor<'e, Database = Any>>(e: E, c: &CheckoutRow) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO checkout_sessions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    ))
    .bind(&c.id)
    .bind(&c.app_id)
    .bind(&c.order_id)
    .bind(&c.payment_id)
    .bind(&c.customer_id)
    .bind(&c.mode)
    .bind(&c.status)
    .bind(&c.url)
    .bind(&c.success_url)
    .bind(&c.cancel_url)
    .bind(c.save_card)
    .bind(c.expires_at)
    .bind(&c.provider_session_id)
    .bind(c.created)
    .bind(c.updated)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(
    e: E,
    app: &str,
    id: &str,
) -> Result<CheckoutRow> {
    sqlx::query_as::<_, CheckoutRow>(&format!(
        "SELECT {COLUMNS} FROM checkout_sessions WHERE app_id = $1 AND id = $2"
    ))
    .bind(app)
    .bind(id)
    .fetch_optional(e)
    .await?
    .ok_or(StoreError::NotFound)
}

/// Locks the checkout an event is about: by our id, else by the provider's session id.
pub async fn lock_by_refs(
    conn: &mut Conn,
    app: &str,
    id: Option<&str>,
    session: Option<&str>,
) -> Result<Option<CheckoutRow>> {
    let lock = lock_clause(conn);
    for (column, value) in [("id", id), ("provider_session_id", session)] {
        let Some(value) = value else { continue };
        let sql = format!(
            "SELECT {COLUMNS} FROM checkout_sessions WHERE app_id = $1 AND {column} = $2{lock}"
        );
        if let Some(c) = sqlx::query_as::<_, CheckoutRow>(&sql)
            .bind(app)
            .bind(value)
            .fetch_optional(&mut *conn)
            .await?
        {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// Records the provider's session and its page; returns the checkout as it now is.
pub async fn set_provider(
    conn: &mut Conn,
    app: &str,
    id: &str,
    session: &str,
    url: &str,
) -> Result<CheckoutRow> {
    sqlx::query_as::<_, CheckoutRow>(&format!(
        "UPDATE checkout_sessions SET provider_session_id = $3, url = $4, updated = $5 \
         WHERE app_id = $1 AND id = $2 RETURNING {COLUMNS}"
    ))
    .bind(app)
    .bind(id)
    .bind(session)
    .bind(url)
    .bind(now())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound)
}

pub async fn set_status(conn: &mut Conn, app: &str, id: &str, status: &str) -> Result<()> {
    sqlx::query(
        "UPDATE checkout_sessions SET status = $3, updated = $4 WHERE app_id = $1 AND id = $2",
    )
    .bind(app)
    .bind(id)
    .bind(status)
    .bind(now())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Open checkouts of any app whose expiry has passed.
pub async fn overdue(db: &Db, now: i64, limit: i64) -> Result<Vec<CheckoutRow>> {
    Ok(sqlx::query_as::<_, CheckoutRow>(&format!(
        "SELECT {COLUMNS} FROM checkout_sessions WHERE status = 'open' AND expires_at < $1 ORDER BY expires_at LIMIT $2"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(db.reader())
    .await?)
}

/// The open checkouts of an order (a new one for the same order supersedes them).
pub async fn open_of_order<'e, E: Executor<'e, Database = Any>>(
    e: E,
    app: &str,
    order: &str,
) -> Result<Vec<CheckoutRow>> {
    Ok(sqlx::query_as::<_, CheckoutRow>(&format!(
        "SELECT {COLUMNS} FROM checkout_sessions WHERE app_id = $1 AND order_id = $2 AND status = 'open'"
    ))
    .bind(app)
    .bind(order)
    .fetch_all(e)
    .await?)
}

/// The checkout of a provider session, read outside any transaction.
pub async fn by_session(db: &Db, app: &str, session: &str) -> Result<Option<CheckoutRow>> {
    Ok(sqlx::query_as::<_, CheckoutRow>(&format!(
        "SELECT {COLUMNS} FROM checkout_sessions WHERE app_id = $1 AND provider_session_id = $2"
    ))
    .bind(app)
    .bind(session)
    .fetch_optional(db.reader())
    .await?)
}

/// Loads and locks an app's checkouts named by our ids or the provider's session ids.
pub async fn lock_many(
    conn: &mut Conn,
    app: &str,
    ids: &[String],
    sessions: &[String],
) -> Result<Vec<CheckoutRow>> {
    if ids.is_empty() && sessions.is_empty() {
        return Ok(Vec::new());
    }
    let named = [("id", ids), ("provider_session_id", sessions)];
    if crate::db::backend_of(conn) == crate::Backend::Sqlite {
        // Each list through its own index, not the app's every checkout (`app_any_in`).
        let sql = format!(
            "SELECT {COLUMNS} FROM checkout_sessions WHERE {} ORDER BY +id",
            Params::app_any_in(&named)
        );
        let q = crate::page::bind_app_any_in(sqlx::query_as::<_, CheckoutRow>(&sql), app, &named);
        return Ok(q.fetch_all(&mut *conn).await?);
    }
    let mut p = Params::on(conn);
    let app_param = p.one();
    let any = p.any_in(&named);
    let sql = format!(
        "SELECT {COLUMNS} FROM checkout_sessions WHERE app_id = {app_param} AND ({any}) ORDER BY id{}",
        lock_clause(conn)
    );
    let mut q = sqlx::query_as::<_, CheckoutRow>(&sql).bind(app);
    for v in ids.iter().chain(sessions) {
        q = q.bind(v);
    }
    Ok(q.fetch_all(&mut *conn).await?)
}

#[cfg(test)]
mod tests {
    /// A webhook batch's checkouts are found through their own indexes on SQLite, not by
    /// reading every checkout of the app (see `Params::app_any_in`).
    #[tokio::test]
    async fn checkouts_named_by_refs_are_searched_by_their_indexes_on_sqlite() {
        let (ids, sessions) = (
            vec!["cko_1".to_owned()],
            vec!["cs_1".to_owned(), "cs_2".to_owned()],
        );
        let named = [("id", &ids[..]), ("provider_session_id", &sessions[..])];
        crate::db::assert_plan(
            &format!(
                "SELECT id FROM checkout_sessions WHERE {} ORDER BY +id",
                crate::page::Params::app_any_in(&named)
            ),
            &[
                "checkout_sessions_app (app_id=? AND id=?)",
                "checkout_sessions_provider (app_id=? AND provider_session_id=?)",
            ],
            &["(app_id=?)"],
        )
        .await;
    }
}
