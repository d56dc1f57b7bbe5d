//! The provider's events as received: stored once per (app, event id) before the
//! webhook is acknowledged, with a count of deliveries and what processing made of it.

use sqlx::{Any, Executor};

use crate::page::Params;
use crate::{Conn, Db, Result, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProviderEventRow {
    pub app_id: String,
    pub id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub created: i64,
    pub livemode: i64,
    pub object_id: Option<String>,
    pub payload: String,
    pub received_count: i64,
    pub first_received: i64,
    pub last_received: i64,
    /// `processed`, `ignored` (a type or object paybridge does not act on), `pending`
    /// (about an object not known yet; retried) or `failed` (retried).
    pub outcome: String,
    pub detail: Option<String>,
    pub attempts: i64,
    pub processed_at: Option<i64>,
}

const COLUMNS: &str =
    "app_id, id, type, created, livemode, object_id, payload, received_count, first_received, \
    last_received, outcome, detail, attempts, processed_at";

/// Which of `rows` (each an app and event id) are stored already: one statement per
/// app and two hundred ids. Inside a SQLite write transaction the answer is final. On
/// PostgreSQL a concurrent transaction may still store one of the others; then
/// [`store_new`] fails, and the caller tries again.
pub async fn stored_among(
    conn: &mut Conn,
    rows: &[ProviderEventRow],
) -> Result<std::collections::HashSet<(String, String)>> {
    let mut stored = std::collections::HashSet::new();
    for app_rows in rows.chunk_by(|a, b| a.app_id == b.app_id) {
        let app = &app_rows[0].app_id;
        for chunk in app_rows.chunks(200) {
            let mut p = Params::on(conn);
            let sql = format!(
                "SELECT app_id, id FROM provider_events WHERE app_id = {} AND id IN ({})",
                p.one(),
                p.list(chunk.len())
            );
            let mut q = sqlx::query_as::<_, (String, String)>(&sql).bind(app);
            for e in chunk {
                q = q.bind(&e.id);
            }
            stored.extend(q.fetch_all(&mut *conn).await?);
        }
    }
    Ok(stored)
}

/// Stores events received for the first time, each with what applying it made of it
/// (its outcome, detail, `attempts` and `processed_at` as given): one insert per
/// hundred, so each row is written once. Returns how many were stored. The caller
/// applied them in this transaction, taking them for new; if fewer are stored than
/// given, some were stored already (before, or by a concurrent transaction of another
/// node on PostgreSQL), and the caller must roll back and try again, finding them with
/// [`stored_among`] first.
pub async fn store_new(conn: &mut Conn, rows: &[ProviderEventRow]) -> Result<usize> {
    let mut stored = 0;
    for chunk in rows.chunks(100) {
        let mut p = Params::on(conn);
        let values: Vec<String> = (0..chunk.len())
            .map(|_| format!("({})", p.list(14)))
            .collect();
        let sql = format!(
            "INSERT INTO provider_events ({COLUMNS}) VALUES {} ON CONFLICT (app_id, id) DO NOTHING",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(&e.app_id)
                .bind(&e.id)
                .bind(&e.kind)
                .bind(e.created)
                .bind(e.livemode)
                .bind(&e.object_id)
                .bind(&e.payload)
                .bind(e.received_count)
                .bind(e.first_received)
                .bind(e.last_received)
                .bind(&e.outcome)
                .bind(&e.detail)
                .bind(e.attempts)
                .bind(e.processed_at);
        }
        stored += q.execute(&mut *conn).await?.rows_affected() as usize;
    }
    Ok(stored)
}

/// Counts `copies` more deliveries of an event already stored.
pub async fn count_delivery(
    conn: &mut Conn,
    app: &str,
    id: &str,
    copies: i64,
    at: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE provider_events SET received_count = received_count + $3, last_received = $4 WHERE app_id = $1 AND id = $2",
    )
    .bind(app)
    .bind(id)
    .bind(copies)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn set_outcome(
    conn: &mut Conn,
    app: &str,
    id: &str,
    outcome: &str,
    detail: Option<&str>,
    at: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE provider_events SET outcome = $3, detail = $4, attempts = attempts + 1, processed_at = $5 \
         WHERE app_id = $1 AND id = $2",
    )
    .bind(app)
    .bind(id)
    .bind(outcome)
    .bind(detail)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(
    e: E,
    app: &str,
    id: &str,
) -> Result<ProviderEventRow> {
    sqlx::query_as::<_, ProviderEventRow>(&format!(
        "SELECT {COLUMNS} FROM provider_events WHERE app_id = $1 AND id = $2"
    ))
    .bind(app)
    .bind(id)
    .fetch_optional(e)
    .await?
    .ok_or(StoreError::NotFound)
}

/// Newest first; `starting_after` is an event id of the previous page.
pub async fn list(
    db: &Db,
    app: &str,
    kind: Option<&str>,
    objects: &[String],
    limit: i64,
    starting_after: Option<&str>,
) -> Result<(Vec<ProviderEventRow>, bool)> {
    let sql = list_sql(
        kind.is_some(),
        objects.len(),
        starting_after.is_some(),
        limit,
    );
    let mut q = sqlx::query_as::<_, ProviderEventRow>(&sql).bind(app);
    if let Some(k) = kind {
        q = q.bind(k);
    }
    for o in objects {
        q = q.bind(o);
    }
    if let Some(s) = starting_after {
        q = q.bind(s);
    }
    let mut rows = q.fetch_all(db.reader()).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok((rows, more))
}

/// The listing's statement: `$1` the app, then the type, the objects and the cursor
/// as far as they are given.
///
/// With objects (the timeline), the app is compared as `app_id || ''`: that keeps the
/// filter but hides it from SQLite's planner, which would otherwise read the app's
/// every event through the primary key (its prefix `app_id` looks as selective to it
/// as the object index, which is keyed by object id alone since migration 0019) instead
/// of the few events of these objects. PostgreSQL plans by its statistics either way.
fn list_sql(kind: bool, objects: usize, cursor: bool, limit: i64) -> String {
    let app = if objects > 0 {
        "app_id || ''"
    } else {
        "app_id"
    };
    let mut sql = format!("SELECT {COLUMNS} FROM provider_events WHERE {app} = $1");
    let mut n = 1;
    if kind {
        n += 1;
        sql.push_str(&format!(" AND type = ${n}"));
    }
    if objects > 0 {
        sql.push_str(&format!(
            " AND object_id IN ({})",
            crate::page::placeholders(n + 1, objects)
        ));
        n += objects;
    }
    if cursor {
        n += 1;
        sql.push_str(&format!(
            " AND (first_received, id) < (SELECT first_received, id FROM provider_events WHERE app_id = $1 AND id = ${n})"
        ));
    }
    sql.push_str(&format!(
        " ORDER BY first_received DESC, id DESC LIMIT {}",
        limit + 1
    ));
    sql
}

/// Events of any app still waiting to be applied (their object was unknown, or
/// processing failed) whose next try is due, oldest first. The condition
/// `outcome IN ('pending', 'failed')` is spelt exactly as the partial index
/// `provider_events_unfinished` spells it: SQLite uses a partial index only for a query
/// whose WHERE contains the index's own condition.
///
/// Each try backs off: an event tried `n` times waits `n²` seconds after its last try
/// (at most ten minutes). Without it the same oldest events were tried every few
/// seconds for a day, each try a write transaction of its own, so another system's
/// traffic on a shared Stripe account (events about objects paybridge will never know)
/// kept the one SQLite writer busy, and once more than a page of them waited, newer
/// events (the ones whose object is about to appear) were never reached.
pub async fn retryable(
    db: &Db,
    received_after: i64,
    now: i64,
    limit: i64,
) -> Result<Vec<ProviderEventRow>> {
    Ok(sqlx::query_as::<_, ProviderEventRow>(&format!(
        "SELECT {COLUMNS} FROM provider_events WHERE outcome IN ('pending', 'failed') AND first_received > $1 \
         AND (processed_at IS NULL \
              OR processed_at + CASE WHEN attempts > 24 THEN 600 ELSE attempts * attempts END <= $2) \
         ORDER BY first_received LIMIT $3"
    ))
    .bind(received_after)
    .bind(now)
    .bind(limit)
    .fetch_all(db.reader())
    .await?)
}

/// Gives up on events that stayed unapplicable too long: they become `ignored`.
pub async fn expire_pending(db: &Db, received_before: i64) -> Result<u64> {
    let mut w = db.autocommit().await?;
    let n = sqlx::query(
        "UPDATE provider_events SET outcome = 'ignored', detail = COALESCE(detail, '') || ' (gave up)' \
         WHERE outcome IN ('pending', 'failed') AND first_received <= $1",
    )
    .bind(received_before)
    .execute(&mut *w)
    .await?
    .rows_affected();
    w.commit().await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::list_sql;

    /// The timeline's lookup uses the object index on SQLite (see `list_sql`).
    #[tokio::test]
    async fn the_listing_by_object_uses_the_object_index_on_sqlite() {
        for (kind, objects, cursor) in [(false, 2, false), (true, 1, true), (false, 10, true)] {
            let sql = list_sql(kind, objects, cursor, 10);
            let details = crate::db::sqlite_plan(&sql).await;
            assert!(
                details
                    .first()
                    .is_some_and(|d| d.contains("provider_events_object")),
                "{sql}: {details:?}"
            );
        }
    }
}
