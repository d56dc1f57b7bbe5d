//! Housekeeping. Every `housekeeping_interval`: idempotency keys older than the
//! retention and expired customer sessions are removed, and checkouts past their
//! expiry are expired. More often
//! (every few seconds): provider events that were waiting for their object are applied,
//! so an event that beat its object's creation is applied moments after it; and, in a
//! task of its own, on PostgreSQL a table never analyzed is analyzed once 500 of its
//! rows have changed (`paybridge_store::planner`). Only the node that leads the
//! cluster (see `leader`) does any of it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use paybridge_store::{idempotency, now, planner};
use tokio_util::sync::CancellationToken;

use crate::service::{reconcile, webhooks};
use crate::state::AppState;

const WAITING_EVENTS_EVERY: Duration = Duration::from_secs(2);

pub async fn run(state: AppState, stop: CancellationToken) {
    let mut last_round = Instant::now();
    loop {
        let tick = WAITING_EVENTS_EVERY.min(state.settings.housekeeping_interval);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        if !state.leadership.is_leader() {
            continue;
        }
        match webhooks::retry_pending(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(applied = n, "waiting provider events applied"),
            Err(e) => tracing::warn!(error = %e, "retrying waiting provider events failed"),
        }
        if last_round.elapsed() >= state.settings.housekeeping_interval {
            last_round = Instant::now();
            round(&state).await;
        }
    }
}

/// On PostgreSQL, every 2 s on the leader: analyzes the tables never analyzed once 500
/// of their rows have changed (`paybridge_store::planner`). A task of its own, so that
/// analyzing a large table holds up neither the waiting events nor the checkouts'
/// expiry.
pub async fn planner_statistics(state: AppState, stop: CancellationToken) {
    if state.db.backend != paybridge_store::Backend::Postgres {
        return;
    }
    // The tables this process has tried (`planner`): each is tried once.
    let mut tried = HashSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(WAITING_EVENTS_EVERY) => {}
        }
        if !state.leadership.is_leader() {
            continue;
        }
        match planner::analyze_new_tables(&state.db, &mut tried).await {
            Ok(tables) if tables.is_empty() => {}
            Ok(tables) => tracing::info!(?tables, "planner statistics gathered for new tables"),
            Err(e) => {
                tracing::warn!(error = %e, "looking for tables to analyze failed; will retry")
            }
        }
    }
}

pub async fn round(state: &AppState) {
    let cutoff = now() - state.settings.idempotency_ttl.as_secs() as i64;
    match idempotency::purge(&state.db, cutoff).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "expired idempotency keys removed"),
        Err(e) => tracing::warn!(error = %e, "idempotency cleanup failed; will retry"),
    }
    match paybridge_store::customer_sessions::purge(&state.db, now()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "expired customer sessions removed"),
        Err(e) => tracing::warn!(error = %e, "customer session cleanup failed; will retry"),
    }
    match reconcile::expire_overdue(state).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(expired = n, "overdue checkouts expired"),
        Err(e) => tracing::warn!(error = %e.message, "checkout expiry failed; will retry"),
    }
}
