//! Deliveries of events to endpoints, their leases, and every attempt.

use std::collections::HashMap;

use crate::events::EventRow;
use crate::page::{Arg, Params, Select};
use crate::{now, now_ms, Conn, Db, ListParams, Page, Result, StoreError};

fn wants(events_json: &str, kind: &str) -> bool {
    serde_json::from_str::<Vec<String>>(events_json)
        .map(|v| v.iter().any(|e| e == "*" || e == kind))
        .unwrap_or(false)
}

/// Creates the deliveries of new events to their apps' enabled endpoints, in the
/// events' own transaction. Returns how many.
pub async fn fan_out(conn: &mut Conn, events: &[EventRow]) -> Result<usize> {
    let mut endpoints: HashMap<&str, Vec<(String, String)>> = HashMap::new();
    for e in events {
        if !endpoints.contains_key(e.app_id.as_str()) {
            let rows: Vec<(String, String)> =
                sqlx::query_as("SELECT id, events FROM callback_endpoints WHERE app_id = $1 AND status = 'enabled' ORDER BY id")
                    .bind(&e.app_id)
                    .fetch_all(&mut *conn)
                    .await?;
            endpoints.insert(&e.app_id, rows);
        }
    }
    let ms = now_ms();
    let mut rows: Vec<(String, &EventRow, String)> = Vec::new();
    for e in events {
        for (endpoint, filter) in &endpoints[e.app_id.as_str()] {
            if wants(filter, &e.kind) {
                let id = format!("delivery_{}", ulid_like(&e.id, endpoint));
                rows.push((id, e, endpoint.clone()));
            }
        }
    }
    for chunk in rows.chunks(100) {
        let mut p = Params::on(conn);
        let values: Vec<String> = (0..chunk.len())
            .map(|_| {
                format!(
                    "({}, 'pending', 0, {}, 0, {}, {})",
                    p.list(5),
                    p.one(),
                    p.one(),
                    p.one()
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO deliveries (id, app_id, endpoint_id, event_id, event_type, status, attempts, next_attempt_ms, \
                 leased_until_ms, created_ms, updated) VALUES {}",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (id, e, endpoint) in chunk {
            q = q
                .bind(id)
                .bind(&e.app_id)
                .bind(endpoint)
                .bind(&e.id)
                .bind(&e.kind)
                .bind(ms)
                .bind(ms)
                .bind(ms / 1000);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(rows.len())
}

/// A delivery id: the event's time-ordered part and a hash of the pair, so ids sort by
/// event and one (event, endpoint) pair always makes the same id.
fn ulid_like(event: &str, endpoint: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    event.hash(&mut h);
    endpoint.hash(&mut h);
    let tail = event.rsplit('_').next().unwrap_or(event);
    format!("{tail}{:016x}", h.finish())
}

/// What delivering one attempt needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Due {
    pub id: String,
    pub app_id: String,
    /// The app's environment: a `live` app's callbacks go to public addresses only.
    pub environment: String,
    pub endpoint_id: String,
    pub url: String,
    pub secret_sealed: String,
    pub previous_secret_sealed: Option<String>,
    pub previous_secret_expires: Option<i64>,
    pub event_id: String,
    pub event_type: String,
    pub event_data: String,
    pub event_created: i64,
    pub attempts: i64,
    pub created_ms: i64,
}

/// Whether any delivery is due (a cheap read before claiming, which writes).
pub async fn any_due(db: &Db, now_ms: i64) -> Result<bool> {
    let hit: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM deliveries WHERE status = 'pending' AND next_attempt_ms <= $1 AND leased_until_ms < $1 LIMIT 1",
    )
    .bind(now_ms)
    .fetch_optional(db.reader())
    .await?;
    Ok(hit.is_some())
}

/// How much of the delivery capacity one app, and one endpoint, may hold at once.
/// In flight means leased: an attempt being made (on any node), or one whose node died
/// until its lease runs out.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Attempts in flight for one app, across all its endpoints.
    pub per_app: i64,
    /// Attempts in flight for one endpoint that is failing (`failing_since` set); a
    /// healthy endpoint may use its app's whole share.
    pub per_failing_endpoint: i64,
}

/// Leases up to `limit` due deliveries for `lease_ms`; only this caller attempts them.
///
/// Fair across apps and endpoints: no app gets more than `caps.per_app` in flight, no
/// failing endpoint more than `caps.per_failing_endpoint`, and a claim takes the apps'
/// due deliveries in turns (each app's first, then each app's second, …) and, within
/// an app, its endpoints' in turns. So an app whose endpoints hang cannot hold the
/// slots another app's callbacks need. The candidates are the oldest due deliveries of
/// endpoints and apps not already at their cap, at most `8 × limit` of them.
pub async fn claim_due(
    db: &Db,
    now_ms: i64,
    lease_ms: i64,
    limit: i64,
    caps: Caps,
) -> Result<Vec<Due>> {
    let skip_locked = match db.backend {
        crate::Backend::Postgres => " FOR UPDATE OF d SKIP LOCKED",
        crate::Backend::Sqlite => "",
    };
    let mut w = db.autocommit().await?;
    let ids: Vec<String> = sqlx::query_scalar(&format!(
        "WITH busy AS ( \
             SELECT app_id, endpoint_id, COUNT(*) AS n FROM deliveries \
             WHERE leased_until_ms > 0 AND leased_until_ms >= $1 AND status = 'pending' \
             GROUP BY app_id, endpoint_id), \
         busy_app AS (SELECT app_id, SUM(n) AS n FROM busy GROUP BY app_id), \
         cand AS ( \
             SELECT d.id, d.app_id, d.endpoint_id, d.next_attempt_ms, \
                 CASE WHEN e.failing_since IS NULL THEN $4 ELSE $5 END AS ep_cap \
             FROM deliveries d JOIN callback_endpoints e ON e.id = d.endpoint_id \
             WHERE d.status = 'pending' AND d.next_attempt_ms <= $1 AND d.leased_until_ms < $1 \
               AND NOT EXISTS (SELECT 1 FROM busy_app b WHERE b.app_id = d.app_id AND b.n >= $4) \
               AND NOT EXISTS (SELECT 1 FROM busy b WHERE b.endpoint_id = d.endpoint_id \
                   AND b.n >= CASE WHEN e.failing_since IS NULL THEN $4 ELSE $5 END) \
             ORDER BY d.next_attempt_ms, d.id LIMIT $6{skip_locked}), \
         ep_ranked AS ( \
             SELECT c.id, c.app_id, c.endpoint_id, c.next_attempt_ms, c.ep_cap, \
                 ROW_NUMBER() OVER (PARTITION BY c.endpoint_id ORDER BY c.next_attempt_ms, c.id) AS ep_rank \
             FROM cand c), \
         ep_ok AS ( \
             SELECT r.id, r.app_id, r.next_attempt_ms, r.ep_rank FROM ep_ranked r \
             LEFT JOIN busy b ON b.endpoint_id = r.endpoint_id \
             WHERE r.ep_rank + COALESCE(b.n, 0) <= r.ep_cap), \
         app_ranked AS ( \
             SELECT o.id, o.app_id, o.next_attempt_ms, \
                 ROW_NUMBER() OVER (PARTITION BY o.app_id ORDER BY o.ep_rank, o.next_attempt_ms, o.id) AS app_rank \
             FROM ep_ok o), \
         chosen AS ( \
             SELECT a.id FROM app_ranked a LEFT JOIN busy_app b ON b.app_id = a.app_id \
             WHERE a.app_rank + COALESCE(b.n, 0) <= $4 \
             ORDER BY a.app_rank, a.next_attempt_ms, a.id LIMIT $3) \
         UPDATE deliveries SET leased_until_ms = $1 + $2 \
         WHERE id IN (SELECT id FROM chosen) AND status = 'pending' AND leased_until_ms < $1 \
         RETURNING id"
    ))
    .bind(now_ms)
    .bind(lease_ms)
    .bind(limit)
    .bind(caps.per_app)
    .bind(caps.per_failing_endpoint)
    .bind(limit.saturating_mul(8))
    .fetch_all(&mut *w)
    .await?;
    if ids.is_empty() {
        w.commit().await?;
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT d.id, d.app_id, a.environment, d.endpoint_id, e.url, e.secret_sealed, e.previous_secret_sealed, e.previous_secret_expires, \
             d.event_id, d.event_type, ev.data AS event_data, ev.created AS event_created, d.attempts, d.created_ms \
         FROM deliveries d JOIN callback_endpoints e ON e.id = d.endpoint_id JOIN events ev ON ev.id = d.event_id \
             JOIN apps a ON a.id = d.app_id \
         WHERE d.id IN ({}) ORDER BY d.next_attempt_ms, d.id",
        Params::new(db.backend).list(ids.len())
    );
    let mut q = sqlx::query_as::<_, Due>(&sql);
    for id in &ids {
        q = q.bind(id);
    }
    let due = q.fetch_all(&mut *w).await?;
    w.commit().await?;
    Ok(due)
}

/// One attempt's result, as logged.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub delivery_id: String,
    pub app_id: String,
    pub attempted_ms: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub response_snippet: Option<String>,
    pub error: Option<String>,
    pub node: String,
}

/// What the attempt leaves the delivery as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Succeeded,
    RetryAt(i64),
    Failed,
}

/// One attempt to record: the endpoint it went to, what happened, what follows.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub endpoint: String,
    pub attempt: AttemptRow,
    pub next: Next,
}

/// Records attempts (many per transaction: one fsync for a whole batch) and their
/// consequences, and keeps each endpoint's failing-since mark: cleared by its latest
/// attempt succeeding, set by its first failure. Returns, for each endpoint whose latest
/// attempt here failed, how long (seconds) it has been failing.
pub async fn record_attempts(db: &Db, batch: &[Outcome]) -> Result<Vec<(String, i64)>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = db.begin().await?;
    for chunk in batch.chunks(100) {
        let mut p = Params::new(db.backend);
        let values: Vec<String> = (0..chunk.len())
            .map(|_| format!("({})", p.list(8)))
            .collect();
        let sql = format!(
            "INSERT INTO delivery_attempts (delivery_id, app_id, attempted_ms, status_code, latency_ms, \
                 response_snippet, error, node) VALUES {}",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for o in chunk {
            let a = &o.attempt;
            q = q
                .bind(&a.delivery_id)
                .bind(&a.app_id)
                .bind(a.attempted_ms)
                .bind(a.status_code)
                .bind(a.latency_ms)
                .bind(&a.response_snippet)
                .bind(&a.error)
                .bind(&a.node);
        }
        q.execute(&mut *tx).await?;
    }
    let ts = now();
    for o in batch {
        let a = &o.attempt;
        let (status, next_ms) = match o.next {
            Next::Succeeded => ("succeeded", a.attempted_ms),
            Next::RetryAt(ms) => ("pending", ms),
            Next::Failed => ("failed", a.attempted_ms),
        };
        // A delivery stopped meanwhile (endpoint disabled) stays stopped unless this
        // attempt got through.
        sqlx::query(
            "UPDATE deliveries SET status = CASE WHEN status = 'pending' OR $2 = 'succeeded' THEN $2 ELSE status END, \
                 attempts = attempts + 1, next_attempt_ms = $3, leased_until_ms = 0, \
                 last_status = $4, last_error = $5, updated = $6 WHERE id = $1",
        )
        .bind(&a.delivery_id)
        .bind(status)
        .bind(next_ms)
        .bind(a.status_code)
        .bind(&a.error)
        .bind(ts)
        .execute(&mut *tx)
        .await?;
    }
    // Each endpoint's latest attempt in the batch decides its mark.
    let mut latest: HashMap<&str, &Outcome> = HashMap::new();
    for o in batch {
        let e = latest.entry(o.endpoint.as_str()).or_insert(o);
        if o.attempt.attempted_ms >= e.attempt.attempted_ms {
            *e = o;
        }
    }
    let mut failing = Vec::new();
    for (endpoint, o) in latest {
        if o.next == Next::Succeeded {
            sqlx::query("UPDATE callback_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL")
                .bind(endpoint)
                .execute(&mut *tx)
                .await?;
            continue;
        }
        let since: Option<i64> = sqlx::query_scalar(
            "UPDATE callback_endpoints SET failing_since = COALESCE(failing_since, $2) WHERE id = $1 RETURNING failing_since",
        )
        .bind(endpoint)
        .bind(ts)
        .fetch_optional(&mut *tx)
        .await?
        .flatten();
        if let Some(s) = since {
            failing.push((endpoint.to_owned(), ts - s));
        }
    }
    tx.commit().await?;
    Ok(failing)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: String,
    pub app_id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_ms: i64,
}

const DELIVERY_COLUMNS: &str =
    "id, app_id, endpoint_id, event_id, event_type, status, attempts, next_attempt_ms, last_status, last_error, created_ms";

pub async fn delivery(db: &Db, app: &str, id: &str) -> Result<DeliveryRow> {
    sqlx::query_as::<_, DeliveryRow>(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE app_id = $1 AND id = $2"
    ))
    .bind(app)
    .bind(id)
    .fetch_optional(db.reader())
    .await?
    .ok_or(StoreError::NotFound)
}

#[derive(Debug, Default)]
pub struct DeliveryFilter<'a> {
    pub endpoint: Option<&'a str>,
    pub event: Option<&'a str>,
    pub status: Option<&'a str>,
}

/// An app's deliveries, newest event first.
pub async fn deliveries(
    db: &Db,
    app: &str,
    f: &DeliveryFilter<'_>,
    params: &ListParams,
) -> Result<Page<DeliveryRow>> {
    let text = |v: Option<&str>| v.map(|s| Arg::Text(s.to_owned()));
    Select::new(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE 1 = 1"
    ))
    .and("app_id = ?", Arg::Text(app.to_owned()))
    .and_opt("endpoint_id = ?", text(f.endpoint))
    .and_opt("event_id = ?", text(f.event))
    .and_opt("status = ?", text(f.status))
    .page(db.reader(), params)
    .await
}

pub async fn attempts(db: &Db, app: &str, delivery: &str) -> Result<Vec<AttemptRow>> {
    Ok(sqlx::query_as::<_, AttemptRow>(
        "SELECT delivery_id, app_id, attempted_ms, status_code, latency_ms, response_snippet, error, node \
         FROM delivery_attempts WHERE app_id = $1 AND delivery_id = $2 ORDER BY id",
    )
    .bind(app)
    .bind(delivery)
    .fetch_all(db.reader())
    .await?)
}

/// Queues a delivery again, now (a manual redelivery; also of a delivered one).
pub async fn redeliver(db: &Db, app: &str, id: &str) -> Result<()> {
    let mut w = db.autocommit().await?;
    let n = sqlx::query(
        "UPDATE deliveries SET status = 'pending', next_attempt_ms = $3, leased_until_ms = 0, updated = $4 WHERE app_id = $1 AND id = $2",
    )
    .bind(app)
    .bind(id)
    .bind(now_ms())
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

/// Deliveries still to make, across all apps (the backlog metric).
pub async fn backlog(db: &Db) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'")
            .fetch_one(db.reader())
            .await?,
    )
}

/// Stops an endpoint's pending deliveries (it was disabled or deleted).
pub async fn cancel_pending(db: &Db, endpoint: &str) -> Result<u64> {
    let mut w = db.autocommit().await?;
    let n = sqlx::query("UPDATE deliveries SET status = 'failed', last_error = 'endpoint disabled' WHERE endpoint_id = $1 AND status = 'pending'")
        .bind(endpoint)
        .execute(&mut *w)
        .await?
        .rows_affected();
    w.commit().await?;
    Ok(n)
}
