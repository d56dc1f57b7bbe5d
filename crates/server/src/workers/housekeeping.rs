//! Housekeeping. Every `housekeeping_interval`: idempotency keys older than the
//! retention and expired customer sessions are removed, and checkouts past their
//! expiry are expired. More often
//! (every few seconds): provider events that were waiting for their object are applied,
//! so an event that beat its object's creation is applied moments after it, and on
//! PostgreSQL a table never analyzed is analyzed once it has rows
//! (`paybridge_store::planner`). Only the node that leads the cluster (see `leader`)
//! does any of it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use paybridge_store::{idempotency, now, planner};
use tokio_util::sync::CancellationToken;

use crate::service::{reconcile, webhooks};
use crate::state::AppState;

const WAITING_EVENTS_EVERY: Duration = Duration::from_secs(2);

pub async fn run(state: AppState, stop: CancellationToken) {
    let mut last_round = Instant::now();
    // The tables this process has analyzed (`planner`): each is tried once.
    let mut analyzed = HashSet::new();
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
        match planner::analyze_new_tables(&state.db, &mut analyzed).await {
            Ok(tables) if tables.is_empty() => {}
            Ok(tables) => tracing::info!(?tables, "planner statistics gathered for new tables"),
            Err(e) => tracing::warn!(error = %e, "analyzing new tables failed; will retry"),
        }
        if last_round.elapsed() >= state.settings.housekeeping_interval {
            last_round = Instant::now();
            round(&state).await;
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
