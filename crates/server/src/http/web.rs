//! What people see: the demo storefront at `/`, the admin dashboard at `/admin`, and
//! the JavaScript SDK at `/sdk/paybridge.js`. The files are compiled into the binary
//! (`crates/server/web/`), so a single `paybridge` is the whole product.
//!
//! Every page has a strict Content-Security-Policy: scripts and styles from this origin
//! only, no inline script, no framing. Pages carry no secrets; the storefront's key is
//! the demo app's publishable key, and the dashboard keeps the admin key the user types
//! in memory and in `sessionStorage`, nowhere else.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use crate::bootstrap;
use crate::http::extract::Query;
use crate::state::AppState;

const SDK: &str = include_str!("../../web/sdk/paybridge.js");
const SDK_TYPES: &str = include_str!("../../web/sdk/paybridge.d.ts");
const RETURN_PAGE: &str = include_str!("../../web/sdk/return.html");
const RETURN_JS: &str = include_str!("../../web/sdk/return.js");
const STYLE: &str = include_str!("../../web/style.css");
const STORE_PAGE: &str = include_str!("../../web/store/index.html");
const STORE_JS: &str = include_str!("../../web/store/store.js");
const LANDING_PAGE: &str = include_str!("../../web/landing.html");
const ADMIN_PAGE: &str = include_str!("../../web/admin/index.html");
const ADMIN_JS: &str = include_str!("../../web/admin/admin.js");
const ADMIN_CHARTS_JS: &str = include_str!("../../web/admin/charts.js");
/// The dashboard's other modules and its stylesheet, by file name under `/admin/`.
const ADMIN_FILES: &[(&str, &str, &str)] = &[
    ("ui.js", include_str!("../../web/admin/ui.js"), JS),
    (
        "payments.js",
        include_str!("../../web/admin/payments.js"),
        JS,
    ),
    (
        "customers.js",
        include_str!("../../web/admin/customers.js"),
        JS,
    ),
    ("setup.js", include_str!("../../web/admin/setup.js"), JS),
    ("orders.js", include_str!("../../web/admin/orders.js"), JS),
    (
        "admin.css",
        include_str!("../../web/admin/admin.css"),
        "text/css; charset=utf-8",
    ),
];

/// The policy of every page.
pub const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(storefront))
        .route("/admin", get(|| async { page(ADMIN_PAGE.to_owned()) }))
        .route("/admin/", get(|| async { page(ADMIN_PAGE.to_owned()) }))
        .route("/admin/admin.js", get(|| async { asset(ADMIN_JS, JS) }))
        .route(
            "/admin/charts.js",
            get(|| async { asset(ADMIN_CHARTS_JS, JS) }),
        )
        .route("/admin/{file}", get(admin_file))
        .route("/store/store.js", get(|| async { asset(STORE_JS, JS) }))
        .route(
            "/assets/style.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/sdk/paybridge.js", get(sdk))
        .route(
            "/sdk/paybridge.d.ts",
            get(|| async { asset(SDK_TYPES, "application/typescript; charset=utf-8") }),
        )
        .route(
            "/sdk/return",
            get(|| async { page(RETURN_PAGE.to_owned()) }),
        )
        .route("/sdk/return.js", get(|| async { asset(RETURN_JS, JS) }))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
}

const JS: &str = "text/javascript; charset=utf-8";

fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

fn page(html: String) -> Response {
    let mut r = (StatusCode::OK, axum::response::Html(html)).into_response();
    let h = r.headers_mut();
    security_headers(h);
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Popups (the checkout) may keep their opener, so the page can tell when one closes.
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin-allow-popups"),
    );
    r
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    security_headers(h);
    r
}

async fn admin_file(
    crate::http::extract::Path(file): crate::http::extract::Path<String>,
) -> Response {
    match ADMIN_FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, body, content_type)) => asset(body, content_type),
        None => crate::error::ApiError::not_found("file").into_response(),
    }
}

/// The storefront while the demo app is on; otherwise a page that says where things are.
async fn storefront(State(state): State<AppState>) -> Response {
    if state.settings.storefront {
        if let Some(pk) = bootstrap::demo_publishable_key(&state).await {
            return page(STORE_PAGE.replace("{{PUBLISHABLE_KEY}}", &escape(&pk)));
        }
    }
    page(LANDING_PAGE.to_owned())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[derive(Deserialize)]
struct SdkQuery {
    /// `global`: the classic-script form (also chosen for a plain `<script>` tag).
    format: Option<String>,
}

/// The SDK: an ES module; or, for a plain `<script>` tag (which browsers fetch in
/// `no-cors` mode) or `?format=global`, the same code as a classic script that
/// defines `window.PayBridge`.
async fn sdk(headers: HeaderMap, Query(q): Query<SdkQuery>) -> Response {
    let classic_tag = headers.get("sec-fetch-dest").is_some_and(|v| v == "script")
        && headers
            .get("sec-fetch-mode")
            .is_some_and(|v| v == "no-cors");
    let global = q.format.as_deref() == Some("global") || classic_tag;
    let mut r = if global {
        asset(classic_sdk(), JS)
    } else {
        asset(SDK, JS)
    };
    r.headers_mut().insert(
        header::VARY,
        HeaderValue::from_static("sec-fetch-dest, sec-fetch-mode"),
    );
    r
}

/// The module without its `export`s, wrapped so only `window.PayBridge` is defined.
fn classic_sdk() -> &'static str {
    static CLASSIC: OnceLock<String> = OnceLock::new();
    CLASSIC.get_or_init(|| {
        let body: Vec<&str> = SDK
            .lines()
            .filter(|l| !l.starts_with("export default"))
            .map(|l| l.strip_prefix("export ").unwrap_or(l))
            .collect();
        format!(
            "(function () {{\n\"use strict\";\n{}\n}})();\n",
            body.join("\n")
        )
    })
}

#[cfg(test)]
mod tests {
    /// The SDK's table of minor units (which the dashboard types and shows amounts with)
    /// is the core's: Stripe's exponents, not the browser's (which differ for isk, huf…).
    #[test]
    fn the_sdk_counts_minor_units_as_the_core_does() {
        let list = |name: &str| -> Vec<&str> {
            let start = super::SDK.find(&format!("const {name} = \"")).unwrap() + name.len() + 10;
            let end = start + super::SDK[start..].find('"').unwrap();
            super::SDK[start..end].split(' ').collect()
        };
        let (zero, three) = (list("ZERO_DECIMAL"), list("THREE_DECIMAL"));
        assert!(
            zero.contains(&"jpy") && three.contains(&"kwd"),
            "{zero:?} {three:?}"
        );
        for c in paybridge_core::Currency::all() {
            let sdk = if zero.contains(&c.code()) {
                0
            } else if three.contains(&c.code()) {
                3
            } else {
                2
            };
            assert_eq!(sdk, c.exponent(), "{}", c.code());
        }
        for code in zero.iter().chain(&three) {
            assert!(paybridge_core::Currency::parse(code).is_ok(), "{code}");
        }
    }

    #[test]
    fn the_classic_sdk_has_no_exports() {
        let c = super::classic_sdk();
        assert!(!c.lines().any(|l| l.trim_start().starts_with("export ")));
        assert!(c.contains("window.PayBridge = PayBridge"));
        assert!(c.contains("function PayBridge("));
    }
}
