//! Cluster-wide work runs on one node at a time: the node that holds a PostgreSQL
//! advisory lock (on a connection of its own, so the lock lives exactly as long as the
//! node's session) runs the reconciler and housekeeping; the others wait and try again
//! every few seconds, so when the leader dies another node takes over. On SQLite there
//! is one node, and it leads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use paybridge_store::Backend;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// The advisory lock's key: "paybridge" folded into 64 bits.
const LOCK_KEY: i64 = 0x7061_7962_7269_6467;
const CHECK_EVERY: Duration = Duration::from_secs(3);

/// Whether this node leads (read by the workers before each round).
#[derive(Debug, Default)]
pub struct Leadership(AtomicBool);

impl Leadership {
    pub fn is_leader(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, state: &AppState, leads: bool) {
        if self.0.swap(leads, Ordering::AcqRel) != leads {
            state.metrics.leader.set(leads as i64);
            if leads {
                tracing::info!(node = %state.settings.node, "this node now runs the cluster's background work (reconciler, housekeeping)");
            } else {
                tracing::warn!(node = %state.settings.node, "this node no longer leads the cluster's background work");
            }
        }
    }
}

pub async fn run(state: AppState, stop: CancellationToken) {
    if state.db.backend == Backend::Sqlite || state.settings.database_url.is_empty() {
        state.leadership.set(&state, true);
        return;
    }
    loop {
        if let Some(conn) = try_lead(&state).await {
            state.leadership.set(&state, true);
            hold(&state, conn, &stop).await;
            state.leadership.set(&state, false);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

/// A connection holding the lock, if the lock was free.
async fn try_lead(state: &AppState) -> Option<sqlx::PgConnection> {
    let mut conn = match sqlx::PgConnection::connect(&state.settings.database_url).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the leadership connection");
            return None;
        }
    };
    let got: Result<bool, _> = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut conn)
        .await;
    match got {
        Ok(true) => Some(conn),
        Ok(false) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot ask for the leadership lock");
            None
        }
    }
}

/// Keeps the session (and so the lock) alive until shutdown or until it breaks.
async fn hold(state: &AppState, mut conn: sqlx::PgConnection, stop: &CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(LOCK_KEY).execute(&mut conn).await;
                let _ = conn.close().await;
                return;
            }
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
        if let Err(e) = sqlx::query("SELECT 1").execute(&mut conn).await {
            tracing::warn!(node = %state.settings.node, error = %e, "the leadership connection broke");
            return;
        }
    }
}
