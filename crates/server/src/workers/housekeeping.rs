//! Removes idempotency keys once they are older than the retention (24 h by default).

use paybridge_store::{idempotency, now};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

pub async fn run(state: AppState, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(state.settings.housekeeping_interval) => {}
        }
        let cutoff = now() - state.settings.idempotency_ttl.as_secs() as i64;
        match idempotency::purge(&state.db, cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "expired idempotency keys removed"),
            Err(e) => tracing::warn!(error = %e, "idempotency cleanup failed; will retry"),
        }
    }
}
