//! Runs the reconciler every `reconcile_interval`: payments stuck `pending` or
//! `processing` are looked up at the provider. Only on the node that leads the cluster
//! (see `leader`), so a provider is asked once per round, not once per node.

use tokio_util::sync::CancellationToken;

use crate::service::reconcile;
use crate::state::AppState;

pub async fn run(state: AppState, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(state.settings.reconcile_interval) => {}
        }
        if !state.leadership.is_leader() {
            continue;
        }
        match reconcile::run_once(&state, 500, |_, _| {}).await {
            Ok(r) if r.checked > 0 => tracing::info!(
                checked = r.checked,
                changed = r.changed,
                failed = r.failed,
                "reconciled"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.message, "reconciler round failed"),
        }
    }
}
