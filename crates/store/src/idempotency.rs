//! Idempotency keys, as Stripe's: the first request with a key runs; a repeat with the
//! same fingerprint gets the stored response; another body is refused; a repeat while
//! the first still runs is told so. Claiming is one `INSERT … ON CONFLICT DO NOTHING`,
//! so of two concurrent requests (on one node or two) exactly one runs.
//!
//! Keys belong to an [`Owner`]: one API key of one app. Another API key of the same
//! app that sends the same `Idempotency-Key` makes a request of its own; it never sees
//! the first key's response, nor learns that the first key used it.

use crate::{now, now_ms, Conn, Db, Result};

/// Whose idempotency keys these are: an app (or `root`) and the id of the API key
/// that sent the request.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub scope: &'a str,
    pub api_key: &'a str,
}

/// What to do with a request that carries an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This request owns the key: run it, then `complete` or `release`.
    Run,
    /// Done before: send this status and body again.
    Replay { status: u16, body: String },
    /// The key was used with another request.
    Mismatch,
    /// The first request with this key is still running.
    InFlight,
}

#[derive(sqlx::FromRow)]
struct Row {
    fingerprint: String,
    state: String,
    status: Option<i64>,
    body: Option<String>,
    locked_ms: i64,
}

/// Claims `key` for `owner`. A running claim older than
/// `stale_after_ms` is taken over: its owner died (a crash between claim and
/// completion), and every money path behind it is itself idempotent at the provider.
pub async fn claim(
    db: &Db,
    owner: Owner<'_>,
    key: &str,
    fingerprint: &str,
    stale_after_ms: i64,
) -> Result<Claim> {
    let now_ms = now_ms();
    let mut w = db.autocommit().await?;
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key_id, key, fingerprint, state, created, locked_ms) \
         VALUES ($1, $6, $2, $3, 'running', $4, $5) ON CONFLICT (scope, key_id, key) DO NOTHING",
    )
    .bind(owner.scope)
    .bind(key)
    .bind(fingerprint)
    .bind(now())
    .bind(now_ms)
    .bind(owner.api_key)
    .execute(&mut *w)
    .await?
    .rows_affected();
    if inserted == 1 {
        w.commit().await?;
        return Ok(Claim::Run);
    }
    let Some(row) = sqlx::query_as::<_, Row>(
        "SELECT fingerprint, state, status, body, locked_ms FROM idempotency_keys \
         WHERE scope = $1 AND key_id = $3 AND key = $2",
    )
    .bind(owner.scope)
    .bind(key)
    .bind(owner.api_key)
    .fetch_optional(&mut *w)
    .await?
    else {
        // Released between our insert and read: try once more.
        w.commit().await?;
        return Box::pin(claim(db, owner, key, fingerprint, stale_after_ms)).await;
    };
    let took_over = row.state == "running"
        && row.locked_ms < now_ms - stale_after_ms
        && row.fingerprint == fingerprint
        && take_over(&mut w, owner, key, row.locked_ms, now_ms).await?;
    w.commit().await?;
    if row.state == "running" {
        // Busy wins over a body mismatch: the caller should wait, then learn the rest.
        if row.locked_ms >= now_ms - stale_after_ms {
            return Ok(Claim::InFlight);
        }
        if took_over {
            return Ok(Claim::Run);
        }
        return Ok(if row.fingerprint == fingerprint {
            Claim::InFlight
        } else {
            Claim::Mismatch
        });
    }
    if row.fingerprint != fingerprint {
        return Ok(Claim::Mismatch);
    }
    Ok(Claim::Replay {
        status: row.status.unwrap_or(200) as u16,
        body: row.body.unwrap_or_default(),
    })
}

/// Takes over a claim whose owner stopped renewing it; only one taker wins.
async fn take_over(
    conn: &mut Conn,
    owner: Owner<'_>,
    key: &str,
    seen_locked_ms: i64,
    now_ms: i64,
) -> Result<bool> {
    let took = sqlx::query(
        "UPDATE idempotency_keys SET locked_ms = $3 \
         WHERE scope = $1 AND key_id = $5 AND key = $2 AND state = 'running' AND locked_ms = $4",
    )
    .bind(owner.scope)
    .bind(key)
    .bind(now_ms)
    .bind(seen_locked_ms)
    .bind(owner.api_key)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(took == 1)
}

/// Stores the response of the request that ran.
pub async fn complete(db: &Db, owner: Owner<'_>, key: &str, status: u16, body: &str) -> Result<()> {
    let mut w = db.autocommit().await?;
    sqlx::query(
        "UPDATE idempotency_keys SET state = 'done', status = $3, body = $4 \
         WHERE scope = $1 AND key_id = $5 AND key = $2",
    )
    .bind(owner.scope)
    .bind(key)
    .bind(i64::from(status))
    .bind(body)
    .bind(owner.api_key)
    .execute(&mut *w)
    .await?;
    w.commit().await?;
    Ok(())
}

/// Forgets a claim whose request failed on our side, so a retry runs again.
pub async fn release(db: &Db, owner: Owner<'_>, key: &str) -> Result<()> {
    let mut w = db.autocommit().await?;
    sqlx::query(
        "DELETE FROM idempotency_keys \
         WHERE scope = $1 AND key_id = $3 AND key = $2 AND state = 'running'",
    )
    .bind(owner.scope)
    .bind(key)
    .bind(owner.api_key)
    .execute(&mut *w)
    .await?;
    w.commit().await?;
    Ok(())
}

/// Removes keys created before `older_than` (unix seconds); returns how many.
pub async fn purge(db: &Db, older_than: i64) -> Result<u64> {
    let mut w = db.autocommit().await?;
    let n = sqlx::query("DELETE FROM idempotency_keys WHERE created < $1")
        .bind(older_than)
        .execute(&mut *w)
        .await?
        .rows_affected();
    w.commit().await?;
    Ok(n)
}
