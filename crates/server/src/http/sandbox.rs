//! The sandbox's test helpers (`/v1/sandbox/…`: what the paying page does with any key
//! of a sandbox app; renewals and disputes with a server or admin key); its hosted
//! checkout page is `checkout_page`. Each produces the signed Stripe-shaped events a
//! real account would, through the webhook endpoint.

use axum::extract::State;
use paybridge_core::keys::Permission;
use paybridge_core::ProviderKind;
use paybridge_store::{checkouts, config, payments};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult, ErrorBody, OrNotFound};
use crate::http::extract::{Body, Caller, Path};
use crate::service::provider::provider_error;
use crate::service::views::{CheckoutView, PaymentView};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(complete))
        .routes(routes!(expire))
        .routes(routes!(confirm))
        .routes(routes!(renew))
        .routes(routes!(dispute))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RenewInput {
    /// Whether the renewal's charge succeeds (default true).
    pub succeed: Option<bool>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DisputeInput {
    /// Close the open dispute `won` or `lost`; without it, open one.
    pub close: Option<DisputeOutcome>,
}

/// How a dispute closes.
// A closed set, so any other value is the caller's 400 rather than something the
// sandbox refuses, which would read as a provider failure (502).
#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum DisputeOutcome {
    Won,
    Lost,
}

impl DisputeOutcome {
    fn as_str(self) -> &'static str {
        match self {
            DisputeOutcome::Won => "won",
            DisputeOutcome::Lost => "lost",
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ProviderState {
    /// The provider's status of the object after the helper ran.
    pub provider_status: Option<String>,
    pub id: String,
}

/// Move a subscription to its next period and charge it (or fail to), as Stripe's renewal does.
#[utoipa::path(post, path = "/v1/sandbox/subscriptions/{id}/renew", tag = "sandbox",
    params(("id" = String, Path, description = "subscription id (subscription_…)")), request_body = Option<RenewInput>,
    security(("bearer" = [])),
    responses((status = 200, body = ProviderState), (status = "4XX", body = ErrorBody)))]
async fn renew(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<RenewInput>,
) -> ApiResult<axum::Json<ProviderState>> {
    let app = sandbox_app(&state, &caller, Permission::SandboxSimulate).await?;
    let s = paybridge_store::subscriptions::get(state.db.reader(), &app, &id)
        .await
        .or_404("subscription")?;
    let provider = s.provider_subscription_id.ok_or_else(|| {
        ApiError::conflict(
            "subscription_not_started",
            "the sandbox has not started this subscription yet",
        )
    })?;
    let sub = state
        .sandbox
        .renew_subscription(&app, &provider, body.succeed.unwrap_or(true))
        .await
        .map_err(provider_error)?;
    Ok(axum::Json(ProviderState {
        provider_status: sub.status,
        id,
    }))
}

/// Open a dispute on a payment, or close its open one `won` or `lost`.
#[utoipa::path(post, path = "/v1/sandbox/payments/{id}/dispute", tag = "sandbox",
    params(("id" = String, Path, description = "payment id (payment_…)")), request_body = Option<DisputeInput>,
    security(("bearer" = [])),
    responses((status = 200, body = ProviderState), (status = "4XX", body = ErrorBody)))]
async fn dispute(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<DisputeInput>,
) -> ApiResult<axum::Json<ProviderState>> {
    let app = sandbox_app(&state, &caller, Permission::SandboxSimulate).await?;
    let p = payments::get(state.db.reader(), &app, &id)
        .await
        .or_404("payment")?;
    let intent = p.provider_payment_intent.ok_or_else(|| {
        ApiError::conflict("payment_not_disputable", "this payment has taken no money")
    })?;
    let d = state
        .sandbox
        .dispute(&app, &intent, body.close.map(DisputeOutcome::as_str))
        .await
        .map_err(provider_error)?;
    Ok(axum::Json(ProviderState {
        provider_status: d["status"].as_str().map(str::to_owned),
        id: d["id"].as_str().unwrap_or_default().to_owned(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardInput {
    /// A Stripe test card: 4242 4242 4242 4242 succeeds, 4000 0000 0000 0002 is declined,
    /// 4000 0000 0000 9995 has insufficient funds, 4000 0000 0000 0069 is expired.
    pub card_number: String,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct NoInput {}

#[derive(Serialize, ToSchema)]
pub struct SandboxResult {
    /// What the provider now says of the session (`complete`, `expired`).
    pub provider_status: Option<String>,
    pub checkout: CheckoutView,
}

/// The caller's app, if its provider is the sandbox; any other app gets a 404.
async fn sandbox_app(state: &AppState, caller: &Caller, p: Permission) -> ApiResult<String> {
    let app = caller.app(p)?.to_string();
    let cfg = config::get(&state.db, &app).await?;
    match cfg.and_then(|c| ProviderKind::parse(&c.provider)) {
        Some(ProviderKind::Sandbox) => Ok(app),
        _ => Err(ApiError::not_found(
            "sandbox (this app's provider is not the sandbox)",
        )),
    }
}

async fn session_of(
    state: &AppState,
    app: &str,
    checkout: &str,
) -> ApiResult<(checkouts::CheckoutRow, String)> {
    let c = checkouts::get(state.db.reader(), app, checkout)
        .await
        .or_404("checkout session")?;
    let session = c.provider_session_id.clone().ok_or_else(|| {
        ApiError::conflict(
            "checkout_not_started",
            "this checkout never reached the sandbox",
        )
    })?;
    Ok((c, session))
}

/// Pay (or fail to pay) a checkout session with a test card, as the hosted page does.
#[utoipa::path(post, path = "/v1/sandbox/checkout_sessions/{id}/complete", tag = "sandbox",
    params(("id" = String, Path, description = "checkout session id (checkout_…)")), request_body = CardInput,
    security(("bearer" = [])),
    responses((status = 200, body = SandboxResult), (status = 402, body = ErrorBody), (status = "4XX", body = ErrorBody)))]
async fn complete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<CardInput>,
) -> ApiResult<axum::Json<SandboxResult>> {
    let app = sandbox_app(&state, &caller, Permission::SandboxWrite).await?;
    let (c, session) = session_of(&state, &app, &id).await?;
    let s = state
        .sandbox
        .complete_checkout(&app, &session, &body.card_number)
        .await
        .map_err(provider_error)?;
    current(&state, &app, &c, s).await
}

/// Expire a checkout session now.
#[utoipa::path(post, path = "/v1/sandbox/checkout_sessions/{id}/expire", tag = "sandbox",
    params(("id" = String, Path, description = "checkout session id (checkout_…)")), request_body = Option<NoInput>,
    security(("bearer" = [])),
    responses((status = 200, body = SandboxResult), (status = "4XX", body = ErrorBody)))]
async fn expire(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(_empty): Body<NoInput>,
) -> ApiResult<axum::Json<SandboxResult>> {
    let app = sandbox_app(&state, &caller, Permission::SandboxWrite).await?;
    let (c, session) = session_of(&state, &app, &id).await?;
    let s = state
        .sandbox
        .expire_checkout(&app, &session)
        .await
        .map_err(provider_error)?;
    current(&state, &app, &c, s).await
}

/// The answer of a helper that moved a session: the provider's answer is applied (as
/// any answer to our own call is), so the checkout shown is the current one.
async fn current(
    state: &AppState,
    app: &str,
    c: &checkouts::CheckoutRow,
    s: paybridge_core::stripe::objects::CheckoutSession,
) -> ApiResult<axum::Json<SandboxResult>> {
    crate::service::payments::apply_session(state, app, &s).await?;
    let c = checkouts::get(state.db.reader(), app, &c.id)
        .await
        .or_404("checkout session")?;
    let p = payments::get(state.db.reader(), app, &c.payment_id)
        .await
        .ok();
    Ok(axum::Json(SandboxResult {
        provider_status: s.status,
        checkout: CheckoutView::with_payment(&c, p.as_ref()),
    }))
}

/// Confirm a `payment_intent` payment with a test card, as Stripe.js would in your form.
#[utoipa::path(post, path = "/v1/sandbox/payments/{id}/confirm", tag = "sandbox",
    params(("id" = String, Path, description = "payment id (payment_…)")), request_body = CardInput,
    security(("bearer" = [])),
    responses((status = 200, body = PaymentView), (status = 402, body = ErrorBody), (status = "4XX", body = ErrorBody)))]
async fn confirm(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<CardInput>,
) -> ApiResult<axum::Json<PaymentView>> {
    let app = sandbox_app(&state, &caller, Permission::SandboxWrite).await?;
    let p = payments::get(state.db.reader(), &app, &id)
        .await
        .or_404("payment")?;
    let intent = p.provider_payment_intent.clone().ok_or_else(|| {
        ApiError::conflict(
            "payment_not_confirmable",
            "this payment has no payment intent",
        )
    })?;
    state
        .sandbox
        .confirm_intent(&app, &intent, &body.card_number)
        .await
        .map_err(provider_error)?;
    Ok(axum::Json(PaymentView::of(&p)))
}
