//! Housekeeping, every `housekeeping_interval`: idempotency keys older than the
//! retention are removed, checkouts past their expiry are expired, and provider events
//! that were waiting for their object are applied.

use paybridge_store::{idempotency, now};
use tokio_util::sync::CancellationToken;

use crate::service::{reconcile, webhooks};
use crate::state::AppState;

pub async fn run(state: AppState, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(state.settings.housekeeping_interval) => {}
        }
        round(&state).await;
    }
}

pub async fn round(state: &AppState) {
    let cutoff = now() - state.settings.idempotency_ttl.as_secs() as i64;
    match idempotency::purge(&state.db, cutoff).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "expired idempotency keys removed"),
        Err(e) => tracing::warn!(error = %e, "idempotency cleanup failed; will retry"),
    }
    match reconcile::expire_overdue(state).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(expired = n, "overdue checkouts expired"),
        Err(e) => tracing::warn!(error = %e.message, "checkout expiry failed; will retry"),
    }
    match webhooks::retry_pending(state).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(applied = n, "waiting provider events applied"),
        Err(e) => tracing::warn!(error = %e, "retrying waiting provider events failed"),
    }
}
