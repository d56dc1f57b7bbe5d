//! The catch-up worker: at start and then every `event_sync_interval`, reads each
//! Stripe app's event list and applies what webhooks did not bring
//! (`service::event_sync`). Only on the node that leads the cluster. Its first round
//! also brings each app's webhook endpoint in line with the public URL
//! (`service::stripe_endpoint::refresh_all`). With no public URL it is the whole
//! delivery path, and says so.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::service::{event_sync, stripe_endpoint};
use crate::state::AppState;

pub async fn run(state: AppState, stop: CancellationToken) {
    let every = state.settings.event_sync_interval();
    if every.is_zero() {
        return;
    }
    if state.settings.polling_only() {
        tracing::info!(
            public_url = %state.settings.public_url,
            every_secs = every.as_secs(),
            "Stripe cannot reach this server's public URL: Stripe apps get their events by polling Stripe's event list"
        );
    }
    let mut first = true;
    loop {
        // The first round waits only for leadership to settle.
        let wait = if first {
            Duration::from_millis(500)
        } else {
            every
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if !state.leadership.is_leader() {
            continue;
        }
        if first {
            first = false;
            match stripe_endpoint::refresh_all(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    apps = n,
                    "webhook endpoints brought in line with the public URL"
                ),
                Err(e) => tracing::warn!(error = %e.message, "webhook endpoint refresh failed"),
            }
        }
        for r in event_sync::sync_all(&state).await {
            match r {
                Ok(rep) if rep.new > rep.duplicates => tracing::info!(
                    app = %rep.app,
                    new = rep.new - rep.duplicates,
                    read = rep.read,
                    "caught up events webhooks had not brought"
                ),
                Ok(_) => {}
                Err((app, e)) => tracing::warn!(%app, error = %e.message, "catch-up round failed"),
            }
        }
        if let Ok(lag) = event_sync::lag_seconds(&state).await {
            state.metrics.event_sync_lag.set(lag);
        }
    }
}
