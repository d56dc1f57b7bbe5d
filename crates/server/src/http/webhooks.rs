//! `POST /v1/webhooks/stripe/{app_id}`: Stripe's (and the sandbox's) signed events.
//! No API key: the `Stripe-Signature` must match one of the app's signing secrets
//! (the current one, or the previous one during its grace period) within 300 s. The
//! 200 is sent only once the event is durably stored.

use axum::extract::{Request, State};
use paybridge_core::keys::Permission;
use paybridge_core::stripe::event::{self, MAX_EVENT_BYTES};
use paybridge_core::stripe::signature::{self, SignatureError};
use paybridge_store::{now, provider_events};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult, ErrorBody, OrNotFound};
use crate::http::extract::{Caller, Path, Query};
use crate::http::limits;
use crate::http::list::{to_params, List};
use crate::metrics::OutcomeLabels;
use crate::service::ledger::Outcome;
use crate::service::views::ProviderEventView;
use crate::service::webhooks::Ingested;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(receive))
        .routes(routes!(list_provider_events))
        .routes(routes!(get_provider_event))
}

#[derive(Serialize, ToSchema)]
pub struct Received {
    pub received: bool,
    /// This event had arrived before; it was counted, not applied again.
    pub duplicate: bool,
}

fn rejected(state: &AppState, code: &str, message: impl Into<String>) -> ApiError {
    state
        .metrics
        .webhook_events
        .get_or_create(&OutcomeLabels {
            outcome: "rejected",
        })
        .inc();
    ApiError::bad_request(code, message)
}

/// Receive a provider event (signed; no API key).
#[utoipa::path(post, path = "/v1/webhooks/stripe/{app_id}", tag = "webhooks",
    params(("app_id" = String, Path), ("Stripe-Signature" = String, Header, description = "t=<unix>,v1=<hex HMAC-SHA256>")),
    request_body(content = Object, description = "A Stripe event, as Stripe sends it"),
    responses((status = 200, body = Received), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn receive(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    req: Request,
) -> ApiResult<axum::Json<Received>> {
    let header = req
        .headers()
        .get("stripe-signature")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    // The app's budget (Stripe sends from a few addresses for all its accounts, so
    // not the address's); a URL naming no app spends the caller's address's budget.
    let keys = match state.webhook_keys.get(&state, &app_id).await {
        Ok(k) => k,
        Err(e) => {
            let addr = limits::client_addr(&req, &state.settings.trusted_proxies);
            if let Err(limited) = state.limiter.anonymous(addr) {
                return Err(limits::refused(&state, limited));
            }
            return Err(e);
        }
    };
    if let Err(limited) = state.limiter.webhook(&app_id) {
        return Err(limits::refused(&state, limited));
    }
    let body = crate::http::extract::read_limited(req.into_body(), MAX_EVENT_BYTES).await?;
    if keys.secrets.is_empty() {
        return Err(rejected(
            &state,
            "webhook_not_configured",
            "This app has no webhook signing secret: PUT /v1/payment_config/signing_secret",
        ));
    }
    let secrets: Vec<&[u8]> = keys
        .secrets
        .iter()
        .map(|s| s.expose_secret().as_bytes())
        .collect();
    let header = header.ok_or_else(|| {
        rejected(
            &state,
            "signature_missing",
            SignatureError::Missing.to_string(),
        )
    })?;
    signature::verify(&header, &body, &secrets, now()).map_err(|e| {
        let code = match e {
            SignatureError::Stale => "timestamp_out_of_tolerance",
            SignatureError::Malformed | SignatureError::NoSignature | SignatureError::Missing => {
                "signature_invalid_header"
            }
            SignatureError::Mismatch => "signature_mismatch",
        };
        rejected(&state, code, e.to_string())
    })?;
    let ev = event::parse(&body).map_err(|e| rejected(&state, "event_invalid", e.to_string()))?;
    if ev.livemode != keys.live {
        return Err(rejected(
            &state,
            "livemode_mismatch",
            format!(
                "a {} event sent to a {} app",
                if ev.livemode { "live" } else { "test" },
                if keys.live { "live" } else { "test" }
            ),
        ));
    }
    // The body parsed as JSON, so it is UTF-8: this takes its buffer, not a copy. The
    // client secret is cut out here, on the bytes, before the event is queued.
    let raw = String::from_utf8(Vec::from(body))
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    let raw = paybridge_core::stripe::redact::client_secrets(raw);
    let outcome = state
        .ingestor
        .ingest(&app_id, ev, raw)
        .await
        .map_err(ApiError::internal)?;
    let duplicate = outcome == Ingested::Duplicate;
    let label = match outcome {
        Ingested::Duplicate => "duplicate",
        // Stored, but refused by the ledger's invariants (a `ledger.anomaly`).
        Ingested::Applied(Outcome::Rejected(_)) => "anomaly",
        Ingested::Applied(_) => "processed",
    };
    state
        .metrics
        .webhook_events
        .get_or_create(&OutcomeLabels { outcome: label })
        .inc();
    Ok(axum::Json(Received {
        received: true,
        duplicate,
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProviderEventQuery {
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// Only events about these provider objects: comma-separated ids (`pi_…,ch_…`), at most 10.
    pub objects: Option<String>,
    pub limit: Option<i64>,
    pub starting_after: Option<String>,
}

/// What arrived from the provider, newest first (admin key).
#[utoipa::path(get, path = "/v1/provider_events", tag = "webhooks", params(ProviderEventQuery),
    security(("bearer" = [])),
    responses((status = 200, body = List<ProviderEventView>), (status = "4XX", body = ErrorBody)))]
async fn list_provider_events(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ProviderEventQuery>,
) -> ApiResult<axum::Json<List<ProviderEventView>>> {
    let app = caller.app(Permission::ProviderEventsRead)?;
    let params = to_params(q.limit, q.starting_after)?;
    let objects: Vec<String> = q
        .objects
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if objects.len() > 10 {
        return Err(
            ApiError::bad_request("parameter_invalid", "give at most 10 object ids")
                .with_param("objects"),
        );
    }
    let (rows, has_more) = provider_events::list(
        &state.db,
        app.as_str(),
        q.kind.as_deref(),
        &objects,
        params.limit,
        params.starting_after.as_deref(),
    )
    .await?;
    Ok(axum::Json(List {
        object: "list",
        data: rows
            .iter()
            .map(|r| ProviderEventView::of(r, false))
            .collect(),
        has_more,
    }))
}

/// One provider event, with its payload and what processing made of it (admin key).
#[utoipa::path(get, path = "/v1/provider_events/{id}", tag = "webhooks", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = ProviderEventView), (status = "4XX", body = ErrorBody)))]
async fn get_provider_event(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ProviderEventView>> {
    let app = caller.app(Permission::ProviderEventsRead)?;
    let row = provider_events::get(state.db.reader(), app.as_str(), &id)
        .await
        .or_404("provider event")?;
    Ok(axum::Json(ProviderEventView::of(&row, true)))
}
