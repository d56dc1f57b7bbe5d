//! `/v1/payment_config` and `/v1/config`: Fliplet's `Configuration.update`,
//! `updateSigningSecret` and `isConfigured`. Secrets go in; they never come out.

use axum::extract::State;
use paybridge_core::keys::Permission;
use paybridge_core::{Environment, Invalid, ProviderKind};
use paybridge_store::config::{self as store, ConfigRow};
use paybridge_store::{event_sync, now, stripe_endpoints};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, ErrorBody};
use crate::http::extract::{Body, Caller};
use crate::service::config as service;
use crate::service::stripe_endpoint;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_config, get_config))
        .routes(routes!(put_signing_secret))
        .routes(routes!(get_status))
        .routes(routes!(get_public_config))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutConfig {
    /// `stripe` or `sandbox`.
    #[schema(example = "stripe")]
    pub provider: String,
    /// Stripe's publishable key (`pk_test_…` / `pk_live_…`).
    pub provider_public_key: Option<String>,
    /// Stripe's secret key (`sk_…` or restricted `rk_…`); stored encrypted, never returned.
    pub provider_secret_key: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSigningSecret {
    /// The webhook endpoint's signing secret (`whsec_…`); stored encrypted, never returned.
    pub signing_secret: String,
}

#[derive(Serialize, ToSchema)]
pub struct ConfigView {
    /// Always `payment_config`.
    pub object: &'static str,
    pub provider: Option<String>,
    pub provider_public_key: Option<String>,
    pub environment: String,
    pub configured: bool,
    pub has_signing_secret: bool,
    pub has_provider_secret_key: bool,
    /// Where to point the Stripe webhook endpoint.
    pub webhook_callback_url: String,
    /// Stripe apps: `webhooks` (an endpoint, with polling as a backstop) or `polling`
    /// (Stripe cannot reach this server, so polling its event list is the whole path).
    pub event_delivery: Option<String>,
    /// Stripe apps: the webhook endpoint paybridge made, or why it has none.
    pub webhook_endpoint: Option<WebhookEndpointView>,
    /// Stripe apps: where the catch-up worker stands in Stripe's event list.
    pub event_sync: Option<EventSyncView>,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookEndpointView {
    /// `managed` (paybridge made it and holds its secret), `manual` (a secret set by
    /// hand), `unreachable_url`, `permission_denied` or `failed`.
    pub setup: String,
    /// Why there is no endpoint of ours, and what to do instead.
    pub message: Option<String>,
    /// Stripe's id (`we_…`).
    pub id: Option<String>,
    pub url: Option<String>,
    /// Stripe's status: `enabled` or `disabled`.
    pub status: Option<String>,
    pub api_version: Option<String>,
    pub enabled_events: Vec<String>,
    /// Unix seconds.
    pub updated: i64,
}

#[derive(Serialize, ToSchema)]
pub struct EventSyncView {
    /// The newest event time (unix seconds) read from Stripe's event list.
    pub cursor: i64,
    /// When a round last read every page (unix seconds).
    pub last_success: Option<i64>,
    pub last_error: Option<String>,
    /// Seconds since `last_success`: how stale the catch-up may be.
    pub lag_seconds: Option<i64>,
    /// Events read, and events that were new to paybridge (missed by webhooks).
    pub events_read: i64,
    pub events_new: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ConfigStatus {
    pub configured: bool,
}

#[derive(Serialize, ToSchema)]
pub struct PublicConfig {
    /// The key for Stripe.js, when the provider is Stripe.
    pub publishable_key: Option<String>,
    pub provider: Option<String>,
}

async fn view(
    state: &AppState,
    app: &str,
    env: Environment,
    row: Option<ConfigRow>,
) -> ApiResult<ConfigView> {
    let stripe = row.as_ref().is_some_and(|r| r.provider == "stripe");
    let (endpoint, sync) = if stripe {
        (
            stripe_endpoints::get(&state.db, app).await?,
            event_sync::get(&state.db, app).await?,
        )
    } else {
        (None, None)
    };
    let polling_only = state.settings.polling_only();
    Ok(ConfigView {
        object: "payment_config",
        configured: row
            .as_ref()
            .is_some_and(|r| service::configured(r, polling_only)),
        has_signing_secret: row
            .as_ref()
            .is_some_and(|r| r.signing_secret_sealed.is_some()),
        has_provider_secret_key: row.as_ref().is_some_and(|r| r.secret_key_sealed.is_some()),
        provider: row.as_ref().map(|r| r.provider.clone()),
        provider_public_key: row.and_then(|r| r.public_key),
        environment: env.as_str().to_owned(),
        webhook_callback_url: stripe_endpoint::callback_url(state, app),
        event_delivery: stripe
            .then(|| if polling_only { "polling" } else { "webhooks" }.to_owned()),
        webhook_endpoint: endpoint.map(|e| WebhookEndpointView {
            setup: e.setup,
            message: e.message,
            id: e.endpoint_id,
            url: e.url,
            status: e.status,
            api_version: e.api_version,
            enabled_events: e
                .enabled_events
                .and_then(|j| serde_json::from_str(&j).ok())
                .unwrap_or_default(),
            updated: e.updated,
        }),
        event_sync: sync.map(|s| EventSyncView {
            cursor: s.cursor,
            lag_seconds: s.last_success.map(|t| (now() - t).max(0)),
            last_success: s.last_success,
            last_error: s.last_error,
            events_read: s.events_read,
            events_new: s.events_new,
        }),
    })
}

fn env_of(caller: &Caller) -> Environment {
    caller.0.environment.unwrap_or_default()
}

/// Set the provider and its keys (admin).
#[utoipa::path(put, path = "/v1/payment_config", tag = "payment_config", request_body = PutConfig,
    security(("bearer" = [])),
    responses((status = 200, body = ConfigView), (status = "4XX", body = ErrorBody)))]
async fn put_config(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<PutConfig>,
) -> ApiResult<axum::Json<ConfigView>> {
    let app = caller.app(Permission::ConfigWrite)?;
    let provider = ProviderKind::parse(&body.provider).ok_or_else(|| {
        Invalid::new(
            "provider",
            "invalid_provider",
            "provider must be `stripe` or `sandbox`",
        )
    })?;
    let row = service::set_provider(
        &state,
        app.as_str(),
        env_of(&caller),
        provider,
        body.provider_public_key.as_deref(),
        body.provider_secret_key.as_deref(),
    )
    .await?;
    Ok(axum::Json(
        view(&state, app.as_str(), env_of(&caller), Some(row)).await?,
    ))
}

/// Set the webhook signing secret (admin); the previous one stays valid for a grace period.
#[utoipa::path(put, path = "/v1/payment_config/signing_secret", tag = "payment_config",
    request_body = PutSigningSecret, security(("bearer" = [])),
    responses((status = 200, body = ConfigView), (status = "4XX", body = ErrorBody)))]
async fn put_signing_secret(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<PutSigningSecret>,
) -> ApiResult<axum::Json<ConfigView>> {
    let app = caller.app(Permission::ConfigWrite)?;
    let row =
        stripe_endpoint::set_manual_signing_secret(&state, app.as_str(), &body.signing_secret)
            .await?;
    Ok(axum::Json(
        view(&state, app.as_str(), env_of(&caller), Some(row)).await?,
    ))
}

/// Read the configuration (admin, server); secrets never appear.
#[utoipa::path(get, path = "/v1/payment_config", tag = "payment_config",
    security(("bearer" = [])),
    responses((status = 200, body = ConfigView), (status = "4XX", body = ErrorBody)))]
async fn get_config(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<ConfigView>> {
    let app = caller.app(Permission::ConfigRead)?;
    let row = store::get(&state.db, app.as_str()).await?;
    Ok(axum::Json(
        view(&state, app.as_str(), env_of(&caller), row).await?,
    ))
}

/// Whether the app can take payments (any key).
#[utoipa::path(get, path = "/v1/payment_config/status", tag = "payment_config",
    security(("bearer" = [])),
    responses((status = 200, body = ConfigStatus), (status = "4XX", body = ErrorBody)))]
async fn get_status(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<ConfigStatus>> {
    let app = caller.app(Permission::ConfigStatus)?;
    let row = store::get(&state.db, app.as_str()).await?;
    Ok(axum::Json(ConfigStatus {
        configured: row
            .as_ref()
            .is_some_and(|r| service::configured(r, state.settings.polling_only())),
    }))
}

/// What a front end needs to start Stripe.js (any key), as Stripe's sample `/config`.
#[utoipa::path(get, path = "/v1/config", tag = "payment_config",
    security(("bearer" = [])),
    responses((status = 200, body = PublicConfig), (status = "4XX", body = ErrorBody)))]
async fn get_public_config(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<PublicConfig>> {
    let app = caller.app(Permission::ConfigStatus)?;
    let row = store::get(&state.db, app.as_str()).await?;
    Ok(axum::Json(PublicConfig {
        provider: row.as_ref().map(|r| r.provider.clone()),
        publishable_key: row.and_then(|r| r.public_key),
    }))
}
