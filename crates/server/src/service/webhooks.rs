//! Webhooks in: a verified event is stored once per (app, event id) and applied in the
//! same transaction, before the 200 that tells the provider it is safe. A repeated
//! delivery is counted and acknowledged without a second effect, also when copies
//! arrive at once (the primary key decides which one applies).

use paybridge_core::stripe::event::Event;
use paybridge_store::provider_events::{self, ProviderEventRow};
use paybridge_store::{now, StoreError};

use super::ledger::{self, Outcome};
use crate::state::AppState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// First delivery: stored, and applied with this outcome.
    Applied(Outcome),
    /// A repeat of an event already stored.
    Duplicate,
}

pub async fn ingest(
    state: &AppState,
    app: &str,
    ev: &Event,
    raw: &str,
) -> Result<Ingested, StoreError> {
    let ts = now();
    let mut tx = state.db.begin().await?;
    let count = provider_events::record(
        &mut tx,
        &ProviderEventRow {
            app_id: app.to_owned(),
            id: ev.id.clone(),
            kind: ev.kind.clone(),
            created: ev.created,
            livemode: i64::from(ev.livemode),
            object_id: ev
                .object
                .get("id")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            payload: redact_client_secrets(raw),
            received_count: 1,
            first_received: ts,
            last_received: ts,
            outcome: "received".into(),
            detail: None,
            attempts: 0,
            processed_at: None,
        },
    )
    .await?;
    if count > 1 {
        tx.commit().await?;
        return Ok(Ingested::Duplicate);
    }
    let outcome = ledger::apply_event(&mut tx, app, ev).await?;
    let (name, detail) = outcome.parts();
    provider_events::set_outcome(&mut tx, app, &ev.id, name, Some(detail), ts).await?;
    tx.commit().await?;
    Ok(Ingested::Applied(outcome))
}

/// Applies stored events that were waiting for their object (or failed); gives up on
/// those older than a day. Returns how many were applied now.
pub async fn retry_pending(state: &AppState) -> Result<usize, StoreError> {
    let day_ago = now() - 24 * 3600;
    provider_events::expire_pending(&state.db, day_ago).await?;
    let mut applied = 0;
    for row in provider_events::retryable(&state.db, day_ago, 200).await? {
        let Ok(ev) = paybridge_core::stripe::event::parse(row.payload.as_bytes()) else {
            continue;
        };
        let mut tx = state.db.begin().await?;
        let current = provider_events::get(&mut *tx, &row.app_id, &row.id).await?;
        if !matches!(current.outcome.as_str(), "pending" | "failed") {
            continue;
        }
        let outcome = ledger::apply_event(&mut tx, &row.app_id, &ev).await?;
        let (name, detail) = outcome.parts();
        provider_events::set_outcome(&mut tx, &row.app_id, &row.id, name, Some(detail), now())
            .await?;
        tx.commit().await?;
        if name == "processed" {
            applied += 1;
        }
    }
    Ok(applied)
}

/// Stripe's payment intent events carry the intent's client secret; it is not kept.
pub fn redact_client_secrets(raw: &str) -> String {
    if !raw.contains("\"client_secret\"") {
        return raw.to_owned();
    }
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, x) in o.iter_mut() {
                    if k == "client_secret" && x.is_string() {
                        *x = serde_json::Value::String("[redacted]".into());
                    } else {
                        walk(x);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(mut v) => {
            walk(&mut v);
            v.to_string()
        }
        Err(_) => raw.to_owned(),
    }
}
