//! Where the catch-up worker stands in each Stripe app's event list.

use crate::{Db, Result};

#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct SyncRow {
    pub app_id: String,
    /// The newest event `created` (unix seconds) read so far; the next round starts here.
    pub cursor: i64,
    pub last_event_id: Option<String>,
    pub last_run: Option<i64>,
    pub last_success: Option<i64>,
    pub last_error: Option<String>,
    pub events_read: i64,
    pub events_new: i64,
}

const COLUMNS: &str =
    "app_id, cursor, last_event_id, last_run, last_success, last_error, events_read, events_new";

pub async fn get(db: &Db, app: &str) -> Result<Option<SyncRow>> {
    Ok(sqlx::query_as::<_, SyncRow>(&format!(
        "SELECT {COLUMNS} FROM stripe_event_sync WHERE app_id = $1"
    ))
    .bind(app)
    .fetch_optional(db.reader())
    .await?)
}

pub async fn all(db: &Db) -> Result<Vec<SyncRow>> {
    Ok(sqlx::query_as::<_, SyncRow>(&format!(
        "SELECT {COLUMNS} FROM stripe_event_sync ORDER BY app_id"
    ))
    .fetch_all(db.reader())
    .await?)
}

/// A round that read every page: the cursor moves forward only (a round started from
/// an older `--since` never moves it back), and the counters grow.
pub async fn succeeded(
    db: &Db,
    app: &str,
    cursor: i64,
    last_event_id: Option<&str>,
    read: i64,
    new: i64,
    at: i64,
) -> Result<()> {
    let mut w = db.autocommit().await?;
    sqlx::query(
        "INSERT INTO stripe_event_sync (app_id, cursor, last_event_id, last_run, last_success, \
             last_error, events_read, events_new) VALUES ($1, $2, $3, $4, $4, NULL, $5, $6) \
         ON CONFLICT (app_id) DO UPDATE SET \
             last_event_id = CASE WHEN $2 >= stripe_event_sync.cursor THEN COALESCE($3, stripe_event_sync.last_event_id) \
                 ELSE stripe_event_sync.last_event_id END, \
             cursor = CASE WHEN $2 > stripe_event_sync.cursor THEN $2 ELSE stripe_event_sync.cursor END, \
             last_run = $4, last_success = $4, last_error = NULL, \
             events_read = stripe_event_sync.events_read + $5, \
             events_new = stripe_event_sync.events_new + $6",
    )
    .bind(app)
    .bind(cursor)
    .bind(last_event_id)
    .bind(at)
    .bind(read)
    .bind(new)
    .execute(&mut *w)
    .await?;
    w.commit().await?;
    Ok(())
}

/// A round that failed: the cursor stays, the error is kept for the configuration view.
pub async fn failed(db: &Db, app: &str, start: i64, error: &str, at: i64) -> Result<()> {
    let mut w = db.autocommit().await?;
    sqlx::query(
        "INSERT INTO stripe_event_sync (app_id, cursor, last_run, last_error) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (app_id) DO UPDATE SET last_run = $3, last_error = $4",
    )
    .bind(app)
    .bind(start)
    .bind(at)
    .bind(error)
    .execute(&mut *w)
    .await?;
    w.commit().await?;
    Ok(())
}

/// Which of these provider event ids the app already has (from a webhook or an earlier
/// round), so a re-read overlap is not counted as a second delivery.
pub async fn known(db: &Db, app: &str, ids: &[String]) -> Result<Vec<String>> {
    let mut known = Vec::new();
    for chunk in ids.chunks(100) {
        let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT id FROM provider_events WHERE app_id = $1 AND id IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query_scalar::<_, String>(&sql).bind(app);
        for id in chunk {
            q = q.bind(id);
        }
        known.extend(q.fetch_all(db.reader()).await?);
    }
    Ok(known)
}

/// The newest provider event time the app has, by any path.
pub async fn newest_event(db: &Db, app: &str) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar::<_, Option<i64>>(
        "SELECT MAX(created) FROM provider_events WHERE app_id = $1",
    )
    .bind(app)
    .fetch_one(db.reader())
    .await?)
}
