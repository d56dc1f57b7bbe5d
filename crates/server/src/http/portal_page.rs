//! The sandbox's customer portal page (`/sandbox/portal/{app}/{session}`, no key: the
//! session id in a URL that lives an hour is the capability, as Stripe's portal link
//! is). Plain HTML forms, no script: the customer sees their subscriptions, cards and
//! payments, cancels a subscription, makes a card the default. Each action is the
//! sandbox's own change, so its events reach paybridge through the webhook endpoint.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;

use super::checkout_page::{esc, format_money as money, origin};
use crate::http::extract::Path;
use crate::state::AppState;

pub fn pages() -> Router<AppState> {
    Router::new()
        .route("/sandbox/portal/{app}/{session}", get(page))
        .route(
            "/sandbox/portal/{app}/{session}/subscriptions/{sub}/cancel",
            post(cancel),
        )
        .route(
            "/sandbox/portal/{app}/{session}/payment_methods/{pm}/default",
            post(default_card),
        )
}

fn gone() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html("<!doctype html><title>Customer portal</title><p>This portal link is unknown or has expired.</p>"),
    )
        .into_response()
}

async fn page(
    State(state): State<AppState>,
    Path((app, session)): Path<(String, String)>,
) -> Response {
    match state.sandbox.portal_page(&app, &session).await {
        Ok(p) => render(&p),
        Err(_) => gone(),
    }
}

async fn cancel(
    State(state): State<AppState>,
    Path((app, session, sub)): Path<(String, String, String)>,
) -> Response {
    match state.sandbox.portal_cancel(&app, &session, &sub).await {
        Ok(()) => Redirect::to(&format!("/sandbox/portal/{app}/{session}")).into_response(),
        Err(_) => gone(),
    }
}

async fn default_card(
    State(state): State<AppState>,
    Path((app, session, pm)): Path<(String, String, String)>,
) -> Response {
    match state.sandbox.portal_default_card(&app, &session, &pm).await {
        Ok(()) => Redirect::to(&format!("/sandbox/portal/{app}/{session}")).into_response(),
        Err(_) => gone(),
    }
}

fn render(p: &Value) -> Response {
    let s = &p["session"];
    let base = format!(
        "/sandbox/portal/{}/{}",
        esc(s["url"]
            .as_str()
            .unwrap_or("")
            .rsplit('/')
            .nth(1)
            .unwrap_or("")),
        esc(s["id"].as_str().unwrap_or(""))
    );
    let default_pm = p["customer"]["invoice_settings"]["default_payment_method"]
        .as_str()
        .unwrap_or("");
    let mut subs = String::new();
    for sub in p["subscriptions"].as_array().into_iter().flatten() {
        let id = sub["id"].as_str().unwrap_or("");
        let status = sub["status"].as_str().unwrap_or("");
        let item = &sub["items"]["data"][0];
        let price = &item["price"];
        let amount =
            price["unit_amount"].as_i64().unwrap_or(0) * item["quantity"].as_i64().unwrap_or(1);
        let what = format!(
            "{} / {}",
            money(amount, price["currency"].as_str().unwrap_or("usd")),
            price["recurring"]["interval"].as_str().unwrap_or("period")
        );
        let action = if status == "canceled" {
            String::new()
        } else {
            format!(
                "<form method=post action=\"{base}/subscriptions/{}/cancel\"><button class=cancel>Cancel subscription</button></form>",
                esc(id)
            )
        };
        subs.push_str(&format!(
            "<li class=sub data-id=\"{}\"><b>{}</b> <span class=status>{}</span>{action}</li>",
            esc(id),
            esc(&what),
            esc(status)
        ));
    }
    let mut cards = String::new();
    for pm in p["payment_methods"].as_array().into_iter().flatten() {
        let id = pm["id"].as_str().unwrap_or("");
        let c = &pm["card"];
        let label = format!(
            "{} •••• {} ({}/{})",
            c["brand"].as_str().unwrap_or("card"),
            c["last4"].as_str().unwrap_or("????"),
            c["exp_month"],
            c["exp_year"]
        );
        let action = if id == default_pm {
            "<span class=default>Default</span>".to_owned()
        } else {
            format!(
                "<form method=post action=\"{base}/payment_methods/{}/default\"><button class=make-default>Make default</button></form>",
                esc(id)
            )
        };
        cards.push_str(&format!(
            "<li class=card data-id=\"{}\">{}{action}</li>",
            esc(id),
            esc(&label)
        ));
    }
    let mut pays = String::new();
    for pi in p["payment_intents"].as_array().into_iter().flatten() {
        pays.push_str(&format!(
            "<li class=payment>{} <span class=status>{}</span></li>",
            esc(&money(
                pi["amount"].as_i64().unwrap_or(0),
                pi["currency"].as_str().unwrap_or("usd")
            )),
            esc(pi["status"].as_str().unwrap_or(""))
        ));
    }
    let none = "<li class=none>None</li>";
    let or_none = |s: &str| {
        if s.is_empty() {
            none.to_owned()
        } else {
            s.to_owned()
        }
    };
    let return_url = s["return_url"].as_str().unwrap_or("/");
    let html = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>Customer portal</title><style>\
         body{{font:16px/1.5 system-ui,sans-serif;background:#f6f8fa;color:#1a1a2e;margin:0}}\
         main{{max-width:520px;margin:3em auto;background:#fff;padding:2em;border-radius:12px;box-shadow:0 2px 12px #0001}}\
         .badge{{background:#ffd36b;border-radius:4px;padding:2px 8px;font-size:12px;font-weight:600}}\
         ul{{list-style:none;padding:0}}li{{padding:.5em 0;border-bottom:1px solid #eee;display:flex;gap:.6em;align-items:center;flex-wrap:wrap}}\
         form{{margin-left:auto}}button{{padding:.4em .8em;border:0;border-radius:6px;background:#635bff;color:#fff;cursor:pointer}}\
         button.cancel{{background:#b00020}}.status{{font-size:13px;color:#555}}.default{{margin-left:auto;font-size:13px;color:#0a7d28}}</style></head>\
         <body><main><p><span class=badge>SANDBOX</span> Customer portal</p>\
         <h1>Your account</h1><p id=email>{}</p>\
         <h2>Subscriptions</h2><ul id=subscriptions>{}</ul>\
         <h2>Cards</h2><ul id=cards>{}</ul>\
         <h2>Payments</h2><ul id=payments>{}</ul>\
         <p><a id=return href=\"{}\">Return</a></p></main></body></html>",
        esc(p["customer"]["email"].as_str().unwrap_or("")),
        or_none(&subs),
        or_none(&cards),
        or_none(&pays),
        esc(return_url),
    );
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' {}; frame-ancestors 'none'; base-uri 'none'",
        origin(return_url)
    );
    (
        StatusCode::OK,
        [
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::REFERRER_POLICY, "no-referrer".to_owned()),
        ],
        Html(html),
    )
        .into_response()
}
