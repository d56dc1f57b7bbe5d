//! The sandbox provider's state: its objects (customers, intents, sessions, …) as
//! Stripe-shaped JSON, and the signed events it still has to deliver. The outbox is
//! written in the same transaction as the objects, so an event is never lost to a
//! crash and never sent for a change that did not happen.

use sqlx::{Any, Executor};

use crate::db::lock_clause;
use crate::{now, Conn, Db, Result};

pub async fn put<'e, E: Executor<'e, Database = Any>>(
    e: E,
    app: &str,
    id: &str,
    kind: &str,
    data: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO sandbox_objects (app_id, id, kind, data, created) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (app_id, id) DO UPDATE SET data = excluded.data",
    )
    .bind(app)
    .bind(id)
    .bind(kind)
    .bind(data)
    .bind(now())
    .execute(e)
    .await?;
    Ok(())
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(
    e: E,
    app: &str,
    id: &str,
) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT data FROM sandbox_objects WHERE app_id = $1 AND id = $2")
            .bind(app)
            .bind(id)
            .fetch_optional(e)
            .await?,
    )
}

/// Reads an object for update inside a transaction.
pub async fn lock(conn: &mut Conn, app: &str, id: &str) -> Result<Option<String>> {
    let sql = format!(
        "SELECT data FROM sandbox_objects WHERE app_id = $1 AND id = $2{}",
        lock_clause(conn)
    );
    Ok(sqlx::query_scalar(&sql)
        .bind(app)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?)
}

pub async fn list_kind(db: &Db, app: &str, kind: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT data FROM sandbox_objects WHERE app_id = $1 AND kind = $2 ORDER BY created, id",
    )
    .bind(app)
    .bind(kind)
    .fetch_all(db.reader())
    .await?)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub seq: i64,
    pub app_id: String,
    pub event_id: String,
    pub payload: String,
    pub attempts: i64,
}

pub async fn push_event(
    conn: &mut Conn,
    app: &str,
    event_id: &str,
    payload: &str,
    due_ms: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO sandbox_outbox (app_id, event_id, payload, next_attempt_ms) VALUES ($1, $2, $3, $4)")
        .bind(app)
        .bind(event_id)
        .bind(payload)
        .bind(due_ms)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn due(db: &Db, now_ms: i64, limit: i64) -> Result<Vec<OutboxRow>> {
    Ok(sqlx::query_as::<_, OutboxRow>(
        "SELECT seq, app_id, event_id, payload, attempts FROM sandbox_outbox \
         WHERE delivered = 0 AND next_attempt_ms <= $1 ORDER BY seq LIMIT $2",
    )
    .bind(now_ms)
    .bind(limit)
    .fetch_all(db.reader())
    .await?)
}

pub async fn mark_delivered(db: &Db, seq: i64) -> Result<()> {
    let mut w = db.autocommit().await?;
    sqlx::query("UPDATE sandbox_outbox SET delivered = 1, attempts = attempts + 1 WHERE seq = $1")
        .bind(seq)
        .execute(&mut *w)
        .await?;
    w.commit().await?;
    Ok(())
}

pub async fn retry_later(db: &Db, seq: i64, next_attempt_ms: i64) -> Result<()> {
    let mut w = db.autocommit().await?;
    sqlx::query(
        "UPDATE sandbox_outbox SET attempts = attempts + 1, next_attempt_ms = $2 WHERE seq = $1",
    )
    .bind(seq)
    .bind(next_attempt_ms)
    .execute(&mut *w)
    .await?;
    w.commit().await?;
    Ok(())
}

/// Inserts an object only if its id is new; returns whether it did. Two transactions
/// racing on one id: the second waits for the first and then inserts nothing.
pub async fn insert_new(
    conn: &mut Conn,
    app: &str,
    id: &str,
    kind: &str,
    data: &str,
) -> Result<bool> {
    Ok(sqlx::query(
        "INSERT INTO sandbox_objects (app_id, id, kind, data, created) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (app_id, id) DO NOTHING",
    )
    .bind(app)
    .bind(id)
    .bind(kind)
    .bind(data)
    .bind(now())
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1)
}
