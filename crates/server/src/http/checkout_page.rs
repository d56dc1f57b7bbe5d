//! The sandbox's hosted checkout page (`/sandbox/pay/{app}/{session}`, no key: knowing
//! the session id is the capability, as on Stripe's hosted page). It behaves as
//! Stripe's page does for the customer:
//!
//! - it is another browsing context group (`Cross-Origin-Opener-Policy: same-origin`),
//!   so the shop that opened it keeps no handle on it and learns the outcome from the
//!   server, as it must with Stripe Checkout on Stripe's own origin;
//! - it asks for the email, card number, expiry and CVC, and a number that is not a
//!   card (its length, the Luhn check), an expiry in the past or a short CVC is an
//!   input error on the page: nothing is sent to the (sandbox) provider, nothing is
//!   recorded;
//! - a decline is shown inline and the customer can retry on the same page;
//! - amounts are written as the shop's SDK writes them in the browser (`$25.00`,
//!   `¥500`), and a recurring price says so ("then $15.00 every month").
//!
//! It has no script at all (the policy is `default-src 'none'`): the form posts back
//! here, and every check is made on the server.

use axum::body::{to_bytes, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use paybridge_core::Currency;
use paybridge_provider::ProviderError;
use serde_json::Value;

use crate::http::extract::Path;
use crate::state::AppState;

pub fn pages() -> Router<AppState> {
    Router::new().route("/sandbox/pay/{app}/{session}", get(page).post(pay))
}

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The symbol `Intl.NumberFormat("en-US", {style: "currency"})` uses, where it uses one
/// (others are written as the code and a no-break space: `CHF 25.00`).
fn symbol(code: &str) -> Option<&'static str> {
    Some(match code {
        "usd" => "$",
        "eur" => "€",
        "gbp" => "£",
        "jpy" => "¥",
        "cny" => "CN¥",
        "inr" => "₹",
        "krw" => "₩",
        "ils" => "₪",
        "vnd" => "₫",
        "php" => "₱",
        "cad" => "CA$",
        "aud" => "A$",
        "nzd" => "NZ$",
        "hkd" => "HK$",
        "mxn" => "MX$",
        "brl" => "R$",
        "twd" => "NT$",
        "xaf" => "FCFA",
        "xpf" => "CFPF",
        _ => return None,
    })
}

/// Minor units as the storefront (the SDK's `formatMoney` in an en-US browser) writes
/// them: `2500, "usd"` → `$25.00`, `500, "jpy"` → `¥500`, `1234567, "chf"` →
/// `CHF 12,345.67`.
pub fn format_money(amount: i64, currency: &str) -> String {
    let code = currency.to_ascii_lowercase();
    let exponent = Currency::parse(&code).map(|c| c.exponent()).unwrap_or(2);
    let unit = 10i64.pow(exponent);
    let (whole, frac) = (
        amount.unsigned_abs() / unit as u64,
        amount.unsigned_abs() % unit as u64,
    );
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    let number = if exponent == 0 {
        grouped
    } else {
        format!("{grouped}.{frac:0width$}", width = exponent as usize)
    };
    let sign = if amount < 0 { "-" } else { "" };
    match symbol(&code) {
        Some(s) => format!("{sign}{s}{number}"),
        None => format!("{sign}{}\u{a0}{number}", code.to_ascii_uppercase()),
    }
}

/// "every month", "every 3 months".
fn every(interval: &str, count: i64) -> String {
    if count <= 1 {
        format!("every {interval}")
    } else {
        format!("every {count} {interval}s")
    }
}

/// What the customer typed, and what is wrong with it.
#[derive(Default)]
struct Form {
    email: String,
    card: String,
    expiry: String,
    cvc: String,
    errors: Vec<(&'static str, &'static str)>,
}

impl Form {
    /// The values a tester can pay with at once (the sandbox's page, like its test
    /// cards, is for trying things; the hint says which cards do what).
    fn prefilled() -> Form {
        Form {
            email: "customer@example.com".into(),
            card: "4242 4242 4242 4242".into(),
            expiry: "12 / 34".into(),
            cvc: "123".into(),
            errors: vec![],
        }
    }

    fn parse(body: &[u8]) -> Form {
        let mut f = Form::default();
        for (k, v) in form_urlencoded::parse(body) {
            let v = v.chars().take(100).collect::<String>();
            match &*k {
                "email" => f.email = v,
                "card_number" => f.card = v,
                "expiry" => f.expiry = v,
                "cvc" => f.cvc = v,
                _ => {}
            }
        }
        f
    }

    fn error(&self, field: &str) -> Option<&'static str> {
        self.errors
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, m)| *m)
    }

    /// Stripe's page's checks, in its words. `now` is (year, month).
    fn validate(&mut self, now: (i64, i64)) {
        let email = self.email.trim();
        let ok_email = email.split_once('@').is_some_and(|(a, d)| {
            !a.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
        }) && !email.contains(char::is_whitespace);
        if !ok_email {
            self.errors
                .push(("email", "Your email address is invalid."));
        }
        let digits: String = self
            .card
            .chars()
            .filter(|c| !matches!(c, ' ' | '-'))
            .collect();
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            self.errors.push(("card", "Your card number is invalid."));
        } else if digits.len() < 13 {
            self.errors
                .push(("card", "Your card number is incomplete."));
        } else if digits.len() > 19 || !paybridge_provider::sandbox::cards::luhn(&digits) {
            self.errors.push(("card", "Your card number is invalid."));
        }
        let exp: Vec<i64> = self
            .expiry
            .split(['/', ' ', '-'])
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<i64>().unwrap_or(-1))
            .collect();
        match exp[..] {
            [m, y] if (1..=12).contains(&m) && (0..=99).contains(&y) => {
                let year = 2000 + y;
                if (year, m) < now {
                    self.errors
                        .push(("expiry", "Your card's expiration year is in the past."));
                }
            }
            [_, _] => self
                .errors
                .push(("expiry", "Your card's expiration date is invalid.")),
            _ => self
                .errors
                .push(("expiry", "Your card's expiration date is incomplete.")),
        }
        let cvc = self.cvc.trim();
        if !(3..=4).contains(&cvc.len()) || !cvc.chars().all(|c| c.is_ascii_digit()) {
            self.errors
                .push(("cvc", "Your card's security code is incomplete."));
        }
    }
}

fn this_month() -> (i64, i64) {
    let days = paybridge_store::now().div_euclid(86_400);
    let (y, m, _) = paybridge_core::civil::civil_from_days(days);
    (y, m)
}

fn field(f: &Form, name: &str, id: &str, label: &str, value: &str, attrs: &str) -> String {
    let err = f.error(id);
    format!(
        "<div class=field><label for={id}>{label}</label>\
         <input id={id} name={name} value=\"{}\" {attrs}{}>{}</div>",
        esc(value),
        if err.is_some() {
            format!(" aria-invalid=true aria-describedby={id}-error")
        } else {
            String::new()
        },
        err.map(|m| format!("<p class=field-error id={id}-error>{}</p>", esc(m)))
            .unwrap_or_default()
    )
}

fn render(session: &Value, form: &Form, decline: Option<&str>, status: StatusCode) -> Response {
    let currency = session["currency"].as_str().unwrap_or("usd");
    let mut rows = String::new();
    let mut recurring: Option<String> = None;
    let mut recurring_amount = 0i64;
    for li in session["_sandbox"]["line_items"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let qty = li["quantity"].as_i64().unwrap_or(1);
        let unit = li["unit_amount"].as_i64().unwrap_or(0);
        let line = unit.saturating_mul(qty);
        let per = li["interval"].as_str().map(|i| {
            let e = every(i, li["interval_count"].as_i64().unwrap_or(1));
            recurring_amount = recurring_amount.saturating_add(line);
            recurring = Some(e.clone());
            format!("<br><small class=muted>billed {e}</small>")
        });
        rows.push_str(&format!(
            "<tr><td>{} × {qty}{}</td><td class=r>{}</td></tr>",
            esc(li["name"].as_str().unwrap_or("")),
            per.unwrap_or_default(),
            esc(&format_money(line, currency))
        ));
    }
    let amount = session["amount_total"].as_i64().unwrap_or(0);
    let total = format_money(amount, currency);
    let then = recurring
        .map(|e| {
            format!(
                "<p id=recurring>{} today, then {} {}.</p>",
                esc(&total),
                esc(&format_money(recurring_amount, currency)),
                esc(&e)
            )
        })
        .unwrap_or_default();
    let state = session["status"].as_str().unwrap_or("open");
    let body = if state == "open" {
        let verb = if session["mode"] == "subscription" {
            "Subscribe"
        } else {
            "Pay"
        };
        format!(
            "<form method=post novalidate>{}{}<div class=pair>{}{}</div>\
             <button id=pay type=submit>{verb} {}</button></form>\
             <p class=hint>Test cards: 4242 4242 4242 4242 succeeds · 4000 0000 0000 0002 declined · \
             4000 0000 0000 9995 insufficient funds · 4000 0000 0000 0069 expired. Any future \
             expiry and any 3 digits.</p>\
             <p><a id=cancel href=\"{}\">← Cancel and go back</a></p>",
            field(form, "email", "email", "Email", &form.email, "type=email autocomplete=email inputmode=email"),
            field(form, "card_number", "card", "Card number", &form.card, "inputmode=numeric autocomplete=cc-number"),
            field(form, "expiry", "expiry", "Expiry (MM / YY)", &form.expiry, "inputmode=numeric autocomplete=cc-exp placeholder=\"MM / YY\""),
            field(form, "cvc", "cvc", "CVC", &form.cvc, "inputmode=numeric autocomplete=cc-csc placeholder=CVC"),
            esc(&total),
            esc(session["cancel_url"].as_str().unwrap_or("/"))
        )
    } else {
        format!("<p id=closed>This checkout is {}.</p>", esc(state))
    };
    let alert = decline
        .map(|m| {
            format!(
                "<p id=error role=alert>{} Try another card.</p>",
                esc(m.trim_end_matches(' '))
            )
        })
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>Sandbox checkout</title><style>\
         *{{box-sizing:border-box}}\
         body{{font:16px/1.5 system-ui,sans-serif;background:#f6f8fa;color:#1a1a2e;margin:0}}\
         main{{max-width:440px;margin:2em auto;background:#fff;padding:1.5em 2em;border-radius:12px;box-shadow:0 2px 12px #0001}}\
         @media (max-width:480px){{main{{margin:0;border-radius:0;padding:1em;box-shadow:none}}}}\
         h1{{font-size:1.6em;margin:.2em 0}}.badge{{background:#ffd36b;border-radius:4px;padding:2px 8px;font-size:12px;font-weight:600}}\
         table{{width:100%;border-collapse:collapse;margin:1em 0}}td{{padding:.3em 0;vertical-align:top;overflow-wrap:anywhere}}\
         .r{{text-align:right;white-space:nowrap;padding-left:1em}}\
         .total td{{border-top:1px solid #ddd;font-weight:700}}.muted{{color:#666}}\
         label{{display:block;font-size:14px;margin-top:.8em}}\
         input{{width:100%;padding:.6em;font-size:16px;border:1px solid #ccc;border-radius:6px}}\
         input[aria-invalid]{{border-color:#b00020}}.field-error{{color:#b00020;font-size:14px;margin:.2em 0 0}}\
         .pair{{display:flex;gap:.8em}}.pair .field{{flex:1;min-width:0}}\
         button{{width:100%;margin-top:1.2em;padding:.8em;background:#635bff;color:#fff;border:0;border-radius:6px;font-size:16px;cursor:pointer}}\
         #error{{color:#b00020;background:#fde8ec;padding:.6em;border-radius:6px}}#recurring{{color:#444}}\
         .hint{{font-size:12px;color:#666;overflow-wrap:anywhere}}</style></head>\
         <body><main><p><span class=badge>SANDBOX</span> No real money moves.</p><h1>{} {}</h1>{alert}\
         <table>{rows}<tr class=total><td>Total due today</td><td class=r id=total>{}</td></tr></table>{then}{body}</main></body></html>",
        if session["mode"] == "subscription" { "Subscribe" } else { "Pay" },
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
            (header::CACHE_CONTROL, "no-store".to_owned()),
            // A page of the provider's own: the opener keeps no handle on it.
            (
                header::HeaderName::from_static("cross-origin-opener-policy"),
                "same-origin".to_owned(),
            ),
        ],
        Html(html),
    )
        .into_response()
}

pub(super) fn origin(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null")
        .unwrap_or_default()
}

fn page_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        )],
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
        Ok(s) => render(&s, &Form::prefilled(), None, StatusCode::OK),
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
    let mut form = Form::parse(&body);
    let current = match state.sandbox.checkout_page(&app, &session).await {
        Ok(s) => s,
        Err(_) => return page_error(StatusCode::NOT_FOUND, "No such checkout session."),
    };
    if current["status"] != "open" {
        return render(&current, &form, None, StatusCode::CONFLICT);
    }
    // What the customer typed is checked here, as Stripe's page checks it before it
    // sends anything: a typo reaches no provider and leaves no record.
    form.validate(this_month());
    if !form.errors.is_empty() {
        return render(&current, &form, None, StatusCode::BAD_REQUEST);
    }
    let email = form.email.trim().to_owned();
    let result = state
        .sandbox
        .complete_checkout_as(&app, &session, &form.card, Some(&email))
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
            form.card.clear();
            render(
                &current,
                &form,
                Some(&message),
                StatusCode::PAYMENT_REQUIRED,
            )
        }
        Err(ProviderError::Conflict { message, .. }) => {
            render(&current, &form, Some(&message), StatusCode::CONFLICT)
        }
        Err(e) => render(
            &current,
            &form,
            Some(&e.to_string()),
            StatusCode::BAD_GATEWAY,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_written_as_the_shop_writes_it() {
        assert_eq!(format_money(2500, "usd"), "$25.00");
        assert_eq!(format_money(500, "jpy"), "¥500");
        assert_eq!(format_money(123_456_789, "eur"), "€1,234,567.89");
        assert_eq!(format_money(1500, "chf"), "CHF\u{a0}15.00");
        assert_eq!(format_money(1234, "kwd"), "KWD\u{a0}1.234");
        assert_eq!(format_money(0, "usd"), "$0.00");
    }

    #[test]
    fn the_form_refuses_what_is_not_a_card() {
        let check = |card: &str, expiry: &str, cvc: &str, email: &str| {
            let mut f = Form {
                card: card.into(),
                expiry: expiry.into(),
                cvc: cvc.into(),
                email: email.into(),
                errors: vec![],
            };
            f.validate((2026, 12));
            f.errors.iter().map(|(k, _)| *k).collect::<Vec<_>>()
        };
        assert!(check("4242 4242 4242 4242", "12 / 26", "123", "a@b.co").is_empty());
        assert!(check("4000-0000-0000-0002", "1/30", "1234", "a@b.co").is_empty());
        assert_eq!(check("1234", "12/34", "123", "a@b.co"), ["card"]);
        assert_eq!(
            check("4242 4242 4242 4241", "12/34", "123", "a@b.co"),
            ["card"]
        );
        assert_eq!(check("4242x", "12/34", "123", "a@b.co"), ["card"]);
        assert_eq!(
            check("4242424242424242", "11/26", "123", "a@b.co"),
            ["expiry"]
        );
        assert_eq!(
            check("4242424242424242", "13/30", "123", "a@b.co"),
            ["expiry"]
        );
        assert_eq!(check("4242424242424242", "12", "123", "a@b.co"), ["expiry"]);
        assert_eq!(check("4242424242424242", "12/34", "12", "a@b.co"), ["cvc"]);
        assert_eq!(check("4242424242424242", "12/34", "123", "nope"), ["email"]);
    }
}
