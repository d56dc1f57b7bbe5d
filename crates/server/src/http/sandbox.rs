//! The sandbox's test helpers (`/v1/sandbox/…`, any key of a sandbox app) and its
//! hosted test checkout page (`/sandbox/pay/{app}/{session}`, no key: knowing the
//! session id is the capability, as on Stripe's hosted page). Each produces the signed
//! Stripe-shaped events a real account would, through the webhook endpoint.

use axum::body::{to_bytes, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use paybridge_core::keys::Permission;
use paybridge_core::{Currency, Money, ProviderKind};
use paybridge_provider::ProviderError;
use paybridge_store::{checkouts, config, payments};
use serde::{Deserialize, Serialize};
use serde_json::Value;
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
    let app = sandbox_app(&state, &caller).await?;
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
    let app = sandbox_app(&state, &caller).await?;
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

/// The hosted page (HTML, outside the JSON API).
pub fn pages() -> Router<AppState> {
    Router::new().route("/sandbox/pay/{app}/{session}", get(page).post(pay))
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
async fn sandbox_app(state: &AppState, caller: &Caller) -> ApiResult<String> {
    let app = caller.app(Permission::SandboxWrite)?.to_string();
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
    let app = sandbox_app(&state, &caller).await?;
    let (c, session) = session_of(&state, &app, &id).await?;
    let s = state
        .sandbox
        .complete_checkout(&app, &session, &body.card_number)
        .await
        .map_err(provider_error)?;
    Ok(axum::Json(SandboxResult {
        provider_status: s.status,
        checkout: CheckoutView::of(&c),
    }))
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
    let app = sandbox_app(&state, &caller).await?;
    let (c, session) = session_of(&state, &app, &id).await?;
    let s = state
        .sandbox
        .expire_checkout(&app, &session)
        .await
        .map_err(provider_error)?;
    Ok(axum::Json(SandboxResult {
        provider_status: s.status,
        checkout: CheckoutView::of(&c),
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
    let app = sandbox_app(&state, &caller).await?;
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

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

pub(super) fn money(amount: i64, currency: &str) -> String {
    Currency::parse(currency)
        .ok()
        .and_then(|c| Money::new(amount, c).ok())
        .map(|m| m.to_string().to_uppercase())
        .unwrap_or_else(|| format!("{amount} {currency}"))
}

pub(super) fn origin(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null")
        .unwrap_or_default()
}

fn render(session: &Value, message: Option<&str>, status: StatusCode) -> Response {
    let currency = session["currency"].as_str().unwrap_or("usd");
    let mut rows = String::new();
    for li in session["_sandbox"]["line_items"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let qty = li["quantity"].as_i64().unwrap_or(1);
        let unit = li["unit_amount"].as_i64().unwrap_or(0);
        rows.push_str(&format!(
            "<tr><td>{} × {qty}</td><td class=r>{}</td></tr>",
            esc(li["name"].as_str().unwrap_or("")),
            esc(&money(unit.saturating_mul(qty), currency))
        ));
    }
    let total = money(session["amount_total"].as_i64().unwrap_or(0), currency);
    let state = session["status"].as_str().unwrap_or("open");
    let form = if state == "open" {
        format!(
            "<form method=post><label for=card>Card number</label>\
             <input id=card name=card_number inputmode=numeric autocomplete=cc-number value=\"4242 4242 4242 4242\" required>\
             <button id=pay type=submit>Pay {}</button></form>\
             <p class=hint>Test cards: 4242 4242 4242 4242 succeeds · 4000 0000 0000 0002 declined · \
             4000 0000 0000 9995 insufficient funds · 4000 0000 0000 0069 expired</p>\
             <p><a id=cancel href=\"{}\">Cancel and go back</a></p>",
            esc(&total),
            esc(session["cancel_url"].as_str().unwrap_or("/"))
        )
    } else {
        format!("<p id=closed>This checkout is {}.</p>", esc(state))
    };
    let alert = message
        .map(|m| format!("<p id=error role=alert>{}</p>", esc(m)))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>Sandbox checkout</title><style>\
         body{{font:16px/1.5 system-ui,sans-serif;background:#f6f8fa;color:#1a1a2e;margin:0}}\
         main{{max-width:420px;margin:3em auto;background:#fff;padding:2em;border-radius:12px;box-shadow:0 2px 12px #0001}}\
         .badge{{background:#ffd36b;border-radius:4px;padding:2px 8px;font-size:12px;font-weight:600}}\
         table{{width:100%;border-collapse:collapse;margin:1em 0}}td{{padding:.3em 0}}.r{{text-align:right}}\
         .total td{{border-top:1px solid #ddd;font-weight:700}}label{{display:block;font-size:14px;margin-top:1em}}\
         input{{width:100%;box-sizing:border-box;padding:.6em;font-size:16px;border:1px solid #ccc;border-radius:6px}}\
         button{{width:100%;margin-top:1em;padding:.8em;background:#635bff;color:#fff;border:0;border-radius:6px;font-size:16px;cursor:pointer}}\
         #error{{color:#b00020;background:#fde8ec;padding:.6em;border-radius:6px}}.hint{{font-size:12px;color:#666}}</style></head>\
         <body><main><p><span class=badge>SANDBOX</span> No real money moves.</p><h1>Pay {}</h1>{alert}\
         <table>{rows}<tr class=total><td>Total</td><td class=r id=total>{}</td></tr></table>{form}</main></body></html>",
        esc(&total),
        esc(&total),
    );
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' {}; frame-ancestors 'none'; base-uri 'none'",
        origin(session["success_url"].as_str().unwrap_or(""))
    );
    (
        status,
        [
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::REFERRER_POLICY, "no-referrer".to_owned()),
        ],
        Html(html),
    )
        .into_response()
}

fn page_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Html(format!(
            "<!doctype html><title>Sandbox checkout</title><p>{}</p>",
            esc(message)
        )),
    )
        .into_response()
}

async fn page(
    State(state): State<AppState>,
    Path((app, session)): Path<(String, String)>,
) -> Response {
    match state.sandbox.checkout_page(&app, &session).await {
        Ok(s) => render(&s, None, StatusCode::OK),
        Err(_) => page_error(StatusCode::NOT_FOUND, "No such checkout session."),
    }
}

async fn pay(
    State(state): State<AppState>,
    Path((app, session)): Path<(String, String)>,
    req: Request,
) -> Response {
    let body: Bytes = match to_bytes(req.into_body(), 16 * 1024).await {
        Ok(b) => b,
        Err(_) => return page_error(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."),
    };
    let number = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "card_number")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let result = state
        .sandbox
        .complete_checkout(&app, &session, &number)
        .await;
    let current = match state.sandbox.checkout_page(&app, &session).await {
        Ok(s) => s,
        Err(_) => return page_error(StatusCode::NOT_FOUND, "No such checkout session."),
    };
    match result {
        Ok(_) => {
            let target = current["success_url"]
                .as_str()
                .unwrap_or("/")
                .replace("{CHECKOUT_SESSION_ID}", &session);
            Redirect::to(&target).into_response()
        }
        Err(ProviderError::Card { message, .. }) => {
            render(&current, Some(&message), StatusCode::PAYMENT_REQUIRED)
        }
        Err(ProviderError::Conflict { message, .. }) => {
            render(&current, Some(&message), StatusCode::CONFLICT)
        }
        Err(e) => render(&current, Some(&e.to_string()), StatusCode::BAD_GATEWAY),
    }
}
