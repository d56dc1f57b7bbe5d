//! The page where a customer authenticates a payment that is `requires_action` (3-D
//! Secure): `/pay/authenticate/{app}/{payment}?token=…`, the `next_action.url` of the
//! payment (see `service::authentication`). No key: the token, derived from the master
//! key for this one payment, is the capability. An unknown payment, another app's, or a
//! wrong token is the same 404.
//!
//! - On Stripe the page loads Stripe.js from `js.stripe.com` (its policy allows exactly
//!   what Stripe.js needs, on this page only) with the app's publishable key and the
//!   intent's client secret, fetched from Stripe when the page is served (never stored,
//!   logged or put in an event), and calls `handleNextAction` (or `confirmCardPayment`
//!   for Stripe's off-session `authentication_required`). The outcome reaches paybridge
//!   through Stripe's webhooks, as any other.
//! - On the sandbox it is the bank's test challenge, with no script: "Complete" and
//!   "Fail" post back here, and the sandbox sends the events Stripe would.
//!
//! The page shows what authenticating needs: the amount, the shop's name and the card's
//! brand and last 4; nothing about the customer or the order. It acts only while the
//! payment awaits authentication: afterwards, or a second time, it only says how the
//! payment stands.

use axum::body::{to_bytes, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use paybridge_core::stripe::event::needs_authentication;
use paybridge_store::payments::{self, PaymentRow};
use secrecy::ExposeSecret;

use super::checkout_page::{esc, format_money};
use crate::http::extract::Path;
use crate::service::authentication;
use crate::service::provider::bind;
use crate::state::AppState;

const SCRIPT: &str = include_str!("../../web/pay/authenticate.js");

/// The policy of the Stripe page: Stripe.js and its frames, as Stripe documents them
/// (`js.stripe.com` for the script and its frames, `hooks.stripe.com` for the bank's
/// challenge, `api.stripe.com` for its calls), and nothing else.
pub const STRIPE_CSP: &str =
    "default-src 'none'; script-src 'self' https://js.stripe.com https://*.js.stripe.com; \
    frame-src https://js.stripe.com https://*.js.stripe.com https://hooks.stripe.com; \
    connect-src https://api.stripe.com; style-src 'unsafe-inline'; img-src 'self' data:; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The policy of the sandbox's page: no script at all.
const SANDBOX_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

pub fn pages() -> Router<AppState> {
    Router::new()
        .route("/pay/authenticate.js", get(script))
        .route("/pay/authenticate/{app}/{payment}", get(page).post(act))
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// `token` of a query string or form body.
fn token_of(raw: &[u8]) -> String {
    form_urlencoded::parse(raw)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.chars().take(100).collect())
        .unwrap_or_default()
}

/// The payment the link names, if the token is its own.
async fn payment(state: &AppState, app: &str, id: &str, token: &str) -> Option<PaymentRow> {
    if !authentication::verify(app, id, token) {
        return None;
    }
    payments::get(state.db.reader(), app, id).await.ok()
}

async fn shop_name(state: &AppState, app: &str) -> String {
    paybridge_store::apps::get_app(&state.db, app)
        .await
        .map(|a| a.name)
        .unwrap_or_default()
}

async fn page(
    State(state): State<AppState>,
    Path((app, id)): Path<(String, String)>,
    uri: Uri,
) -> Response {
    let token = token_of(uri.query().unwrap_or("").as_bytes());
    let Some(p) = payment(&state, &app, &id, &token).await else {
        return not_found();
    };
    let shop = shop_name(&state, &app).await;
    if authentication::url(&p).is_none() {
        return render(&p, &shop, &standing(&p), "", SANDBOX_CSP);
    }
    match p.provider.as_str() {
        "sandbox" => sandbox_page(&state, &p, &shop, &token).await,
        _ => stripe_page(&state, &p, &shop).await,
    }
}

/// How a payment that no longer awaits authentication stands, in words.
fn standing(p: &PaymentRow) -> String {
    let what = match p.status.as_str() {
        "succeeded" | "partially_refunded" | "refunded" | "disputed" => {
            "This payment is complete. There is nothing left to authenticate."
        }
        "processing" | "requires_capture" => {
            "This payment is authenticated and being confirmed. There is nothing left to do here."
        }
        "failed" => {
            "This payment was not made (authentication failed or the card was declined). The shop will tell you how to try again."
        }
        "canceled" | "expired" => "This payment was canceled. Nothing will be charged.",
        "requires_action" => "This payment is authenticated on the checkout page.",
        _ => "This payment does not need authentication.",
    };
    format!("<p id=standing class=note>{what}</p>")
}

async fn sandbox_page(state: &AppState, p: &PaymentRow, shop: &str, token: &str) -> Response {
    let Some(intent) = &p.provider_payment_intent else {
        return render(p, shop, &standing(p), "", SANDBOX_CSP);
    };
    let info = state
        .sandbox
        .authentication_page(&p.app_id, intent)
        .await
        .unwrap_or_default();
    if info["status"] != "requires_action" {
        let body = "<p id=standing class=note>Your answer reached the bank; the payment is being confirmed. You can close this page.</p>";
        return render(p, shop, body, "", SANDBOX_CSP);
    }
    let card = match (info["brand"].as_str(), info["last4"].as_str()) {
        (Some(b), Some(l)) => format!(
            "<p id=card>Card: {} •••• {}</p>",
            esc(&capitalised(b)),
            esc(l)
        ),
        _ => String::new(),
    };
    let action = authentication::path(&p.app_id, &p.id);
    let form = |outcome: &str, id: &str, label: &str| {
        format!(
            "<form method=post action=\"{}\"><input type=hidden name=token value=\"{}\">\
             <input type=hidden name=outcome value={outcome}><button id={id} type=submit>{label}</button></form>",
            esc(&action),
            esc(token)
        )
    };
    let body = format!(
        "{card}<p class=note>Your bank asks you to confirm this payment. This is the sandbox's test \
         challenge: choose how it ends.</p><div class=buttons>{}{}</div>",
        form("complete", "complete", "Complete authentication"),
        form("fail", "fail", "Fail authentication"),
    );
    render(p, shop, &body, "", SANDBOX_CSP)
}

async fn stripe_page(state: &AppState, p: &PaymentRow, shop: &str) -> Response {
    let unavailable = |p: &PaymentRow| {
        let body = "<p id=error class=error role=alert>The payment provider cannot be reached right now. Try again in a moment.</p>";
        render(p, shop, body, "", SANDBOX_CSP)
    };
    let (Some(intent), Ok(bound)) = (&p.provider_payment_intent, bind(state, &p.app_id).await)
    else {
        return unavailable(p);
    };
    let pk = match paybridge_store::config::get(&state.db, &p.app_id).await {
        Ok(Some(c)) => c.public_key.unwrap_or_default(),
        _ => return unavailable(p),
    };
    let pi = match bound
        .provider
        .retrieve_payment_intent(&bound.call(&format!("{}_authenticate", p.id)), intent)
        .await
    {
        Ok(pi) => pi,
        Err(e) => {
            tracing::warn!(payment = %p.id, error = %e, "the authentication page could not read the intent");
            return unavailable(p);
        }
    };
    let waiting = pi.status == "requires_action"
        || (pi.status == "requires_payment_method" && needs_authentication(&pi));
    let Some(secret) = pi.client_secret.filter(|_| waiting) else {
        let body = "<p id=standing class=note>Your answer reached the bank; the payment is being confirmed. You can close this page.</p>";
        return render(p, shop, body, "", SANDBOX_CSP);
    };
    let secret = secrecy::SecretString::from(secret);
    let payment_method = pi
        .payment_method
        .as_ref()
        .map(|m| m.id().to_owned())
        .or_else(|| {
            pi.last_payment_error
                .as_ref()
                .and_then(|e| e.payment_method.as_ref())
                .map(|m| m.id().to_owned())
        })
        .unwrap_or_default();
    let head = format!(
        "<meta name=pb-stripe-key content=\"{}\"><meta name=pb-client-secret content=\"{}\">\
         <meta name=pb-intent-status content=\"{}\"><meta name=pb-payment-method content=\"{}\">\
         <script src=\"https://js.stripe.com/v3/\"></script><script src=\"/pay/authenticate.js\" defer></script>",
        esc(&pk),
        esc(secret.expose_secret()),
        esc(&pi.status),
        esc(&payment_method),
    );
    let body = "<p class=note>Your bank asks you to confirm this payment.</p>\
        <button id=authenticate type=button>Authenticate</button><p id=result role=status></p>";
    render(p, shop, body, &head, STRIPE_CSP)
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

async fn act(
    State(state): State<AppState>,
    Path((app, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    let body: Bytes = match to_bytes(req.into_body(), 4 * 1024).await {
        Ok(b) => b,
        Err(_) => return not_found(),
    };
    let token = token_of(&body);
    let outcome = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "outcome")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let Some(p) = payment(&state, &app, &id, &token).await else {
        return not_found();
    };
    let shop = shop_name(&state, &app).await;
    let complete = match outcome.as_str() {
        "complete" => true,
        "fail" => false,
        _ => return not_found(),
    };
    // Only the sandbox's challenge posts here; a payment that no longer awaits
    // authentication is left as it is (a second click, a stale page).
    let (true, "sandbox", Some(intent)) = (
        authentication::url(&p).is_some(),
        p.provider.as_str(),
        &p.provider_payment_intent,
    ) else {
        return render(&p, &shop, &standing(&p), "", SANDBOX_CSP);
    };
    let body = match state.sandbox.authenticate(&app, intent, complete).await {
        Ok(pi) if pi.status == "succeeded" || pi.status == "requires_capture" => {
            "<p id=outcome class=ok>Authentication complete. Your bank approved the payment; you can close this page.</p>"
        }
        Ok(pi) if pi.status == "requires_action" => {
            "<p id=outcome class=error>Authentication is still pending.</p>"
        }
        Ok(_) => {
            "<p id=outcome class=error>Authentication failed. The payment was not made; the shop will tell you how to try again.</p>"
        }
        Err(e) => {
            tracing::warn!(payment = %p.id, error = %e, "the sandbox could not authenticate the intent");
            "<p id=outcome class=error>The bank could not be reached. Try again in a moment.</p>"
        }
    };
    render(&p, &shop, body, "", SANDBOX_CSP)
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [
            (header::CONTENT_SECURITY_POLICY, SANDBOX_CSP),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html("<!doctype html><title>Authenticate a payment</title><p>This link is unknown.</p>"),
    )
        .into_response()
}

fn render(p: &PaymentRow, shop: &str, body: &str, head: &str, csp: &'static str) -> Response {
    let badge = if p.provider == "sandbox" {
        "<p><span class=badge>SANDBOX</span> No real money moves.</p>"
    } else {
        ""
    };
    let to = if shop.is_empty() {
        String::new()
    } else {
        format!(" to <span id=shop>{}</span>", esc(shop))
    };
    let html = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>Authenticate a payment</title>{head}<style>\
         *{{box-sizing:border-box}}body{{font:16px/1.5 system-ui,sans-serif;background:#f6f8fa;color:#1a1a2e;margin:0}}\
         main{{max-width:440px;margin:2em auto;background:#fff;padding:1.5em 2em;border-radius:12px;box-shadow:0 2px 12px #0001;overflow-wrap:anywhere}}\
         @media (max-width:480px){{main{{margin:0;border-radius:0;padding:1em;box-shadow:none}}}}\
         h1{{font-size:1.5em;margin:.2em 0}}.badge{{background:#ffd36b;border-radius:4px;padding:2px 8px;font-size:12px;font-weight:600}}\
         .buttons{{display:flex;gap:.8em;flex-wrap:wrap}}.buttons form{{flex:1;min-width:0}}\
         button{{width:100%;margin-top:1em;padding:.8em;background:#635bff;color:#fff;border:0;border-radius:6px;font-size:16px;cursor:pointer}}\
         button#fail{{background:#fff;color:#b00020;border:1px solid #b00020}}\
         .ok{{color:#0a7d28}}.error{{color:#b00020}}.note{{color:#444}}</style></head>\
         <body><main>{badge}<h1>Confirm your payment</h1>\
         <p>Payment of <b id=amount>{}</b>{to}</p>{body}</main></body></html>",
        esc(&format_money(p.amount, &p.currency)),
    );
    (
        StatusCode::OK,
        [
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            // The Stripe page holds the intent's client secret.
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        Html(html),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_token_is_read_from_a_query_or_a_form() {
        assert_eq!(super::token_of(b"token=abc&x=1"), "abc");
        assert_eq!(super::token_of(b"outcome=fail&token=a%20b"), "a b");
        assert_eq!(super::token_of(b""), "");
    }
}
