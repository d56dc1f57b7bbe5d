//! Delivers the sandbox's events to the webhook endpoint, signed with the app's current
//! signing secret, the way Stripe delivers: in order of creation, retried with backoff
//! until a 2xx.

use std::time::Duration;

use paybridge_core::stripe::signature;
use paybridge_store::sandbox::{self, OutboxRow};
use paybridge_store::{config, now, now_ms};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

pub async fn run(state: AppState, stop: CancellationToken) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("HTTP client");
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = state.sandbox_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        loop {
            let due = match sandbox::due(&state.db, now_ms(), 100).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "sandbox outbox unreadable; will retry");
                    break;
                }
            };
            if due.is_empty() {
                break;
            }
            // What was read may be committed and not yet durable (commit pipelining):
            // it leaves the process only once it is, as Stripe sends only what it has
            // committed.
            if let Err(e) = state.db.durable().await {
                tracing::warn!(error = %e, "sandbox outbox not durable; will retry");
                break;
            }
            for row in due {
                if stop.is_cancelled() {
                    return;
                }
                deliver(&state, &http, &row).await;
            }
        }
    }
}

async fn deliver(state: &AppState, http: &reqwest::Client, row: &OutboxRow) {
    let ok = match sign(state, row).await {
        Some(header) => http
            .post(format!(
                "{}/v1/webhooks/stripe/{}",
                state.settings.internal_url, row.app_id
            ))
            .header("content-type", "application/json")
            .header("stripe-signature", header)
            .body(row.payload.clone())
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false),
        None => false,
    };
    let result = if ok {
        sandbox::mark_delivered(&state.db, row.seq).await
    } else {
        // 1 s, 2 s, 4 s … up to an hour, as Stripe backs off.
        let wait = 1000_i64 << row.attempts.clamp(0, 12);
        tracing::warn!(event = %row.event_id, attempts = row.attempts + 1, "sandbox event not accepted; will retry");
        sandbox::retry_later(&state.db, row.seq, now_ms() + wait.min(3_600_000)).await
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "sandbox outbox update failed");
    }
}

async fn sign(state: &AppState, row: &OutboxRow) -> Option<String> {
    let cfg = config::get(&state.db, &row.app_id).await.ok()??;
    let secrets = crate::service::config::signing_secrets(state, &cfg).ok()?;
    let secret = secrets.first()?;
    Some(signature::sign(
        row.payload.as_bytes(),
        secret.expose_secret().as_bytes(),
        now(),
    ))
}
