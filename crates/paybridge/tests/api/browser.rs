//! The pages in a real browser: `tests/browser/run.mjs` drives Debian's headless
//! Chromium with playwright-core against a server started here with its demo app, and
//! each result is checked again through the API. `scripts/test` installs Chromium and
//! the npm packages; `scripts/screenshots` runs these with `PAYBRIDGE_SCREENSHOTS` set
//! to refresh `docs/screenshots/`.

use std::path::PathBuf;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{AppKeys, Backend, Server, TestDb};

fn browser_dir() -> PathBuf {
    paybridge_testkit::repo_root().join("tests/browser")
}

fn chromium() -> String {
    std::env::var("PAYBRIDGE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// The demo shop, with the keys its first start printed.
pub(crate) async fn demo() -> (TestDb, Server, AppKeys) {
    assert!(
        std::path::Path::new(&chromium()).exists() && browser_dir().join("node_modules/playwright-core").exists(),
        "Chromium ({}) or tests/browser/node_modules is missing: run scripts/test, which installs both",
        chromium()
    );
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let s = Server::start_with(&db, &[("PAYBRIDGE_NO_DEMO", "false")]).await;
    let keys = demo_keys(&s);
    (db, s, keys)
}

/// The demo app's keys, as the server's first start printed them.
pub(crate) fn demo_keys(s: &Server) -> AppKeys {
    let banner = s.banner();
    let key = |label: &str| {
        banner
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split_whitespace().find(|w| w.starts_with("pb_")))
            .unwrap_or_else(|| panic!("no {label} in the banner:\n{banner}"))
            .to_owned()
    };
    let app = banner
        .lines()
        .find(|l| l.trim_start().starts_with("demo app"))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("app_")))
        .expect("demo app id")
        .to_owned();
    AppKeys {
        id: app,
        admin: key("admin key"),
        server: key("server key"),
        publishable: key("publishable key"),
    }
}

/// Runs one scenario of `run.mjs`; returns the JSON it printed.
pub(crate) fn scenario(s: &Server, keys: &AppKeys, name: &str, env: &[(&str, &str)]) -> Value {
    let artifacts = paybridge_testkit::repo_root().join("target/browser-artifacts");
    let mut cmd = Command::new("node");
    cmd.arg("run.mjs")
        .arg(name)
        .current_dir(browser_dir())
        .env("BASE", &s.base)
        .env("ADMIN_KEY", &keys.admin)
        .env("PUBLISHABLE_KEY", &keys.publishable)
        .env("CHROMIUM", chromium())
        .env("ARTIFACTS", &artifacts);
    if let Ok(dir) = std::env::var("PAYBRIDGE_SCREENSHOTS") {
        cmd.env("SCREENSHOTS", dir);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run node");
    assert!(
        out.status.success(),
        "browser scenario {name} failed (screenshots in {}):\n{}\nserver log:\n{}",
        artifacts.display(),
        String::from_utf8_lossy(&out.stderr),
        s.logs()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{name} printed {stdout}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storefront_purchase_with_4242_is_paid() {
    let (_db, s, keys) = demo().await;
    let out = scenario(&s, &keys, "storefront-purchase", &[]);
    let order = out["order"].as_str().unwrap();
    let o = s.get(&format!("/v1/orders/{order}"), &keys.admin).await;
    assert_eq!(o.json["status"], "paid", "{}", o.body);
    assert_eq!(o.json["amount_paid"], o.json["amount_total"]);
    assert_eq!(o.json["payments"][0]["status"], "succeeded");
}

/// The storefront's "Manage subscriptions and cards": the demo shop's server opens the
/// sandbox's customer portal for its shopper, who cancels the subscription just bought
/// there; the cancellation reaches paybridge as the provider's event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storefront_opens_the_customer_portal_for_its_shopper() {
    let (_db, s, keys) = demo().await;
    let out = scenario(&s, &keys, "storefront-portal", &[]);
    assert_eq!(out["shopper"], "shopper@example.com", "{out}");
    assert_eq!(out["email"], "shopper@example.com", "{out}");
    assert!(
        out["portalUrl"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/sandbox/portal/{}/bps_", s.base, keys.id)),
        "{out}"
    );
    assert_eq!(out["subs"], 1, "{out}");
    assert_eq!(out["statusBefore"], "active", "{out}");
    assert_eq!(out["statusAfter"], "canceled", "{out}");
    assert_eq!(out["back"], format!("{}/", s.base), "{out}");
    // The SDK's server-side call: the admin key opens the portal, the publishable key not.
    assert!(
        out["sdkPortal"]["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/sandbox/portal/", s.base)),
        "{out}"
    );
    assert_eq!(
        out["sdkPortal"]["returnUrl"],
        format!("{}/", s.base),
        "{out}"
    );
    assert!(
        out["sdkRefused"].as_str().unwrap().starts_with("403"),
        "{out}"
    );
    // The order and its subscription are the shopper's, and the cancellation made in
    // the portal reached paybridge.
    let order = s
        .get(
            &format!("/v1/orders/{}", out["order"].as_str().unwrap()),
            &keys.server,
        )
        .await;
    let customer = order.json["customer"].as_str().unwrap().to_owned();
    let c = s
        .get(&format!("/v1/customers/{customer}"), &keys.server)
        .await;
    assert_eq!(c.json["external_id"], "demo_shopper", "{}", c.body);
    s.until(
        &format!("/v1/subscriptions?customer={customer}"),
        &keys.server,
        |l| l["data"][0]["status"] == "canceled",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_card_is_shown_as_declined() {
    let (_db, s, keys) = demo().await;
    let out = scenario(&s, &keys, "storefront-declined", &[]);
    assert!(
        out["status"].as_str().unwrap().contains("generic_decline"),
        "{out}"
    );
    let failed = s.get("/v1/payments?status=failed", &keys.admin).await;
    assert_eq!(failed.json["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        failed.json["data"][0]["failure"]["decline_code"],
        "generic_decline"
    );
    let paid = s.get("/v1/orders?status=paid", &keys.admin).await;
    assert_eq!(
        paid.json["data"].as_array().unwrap().len(),
        0,
        "nothing was paid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_checkout_resolves_with_the_transaction_details() {
    let (_db, s, keys) = demo().await;
    let out = scenario(&s, &keys, "sdk-checkout", &[]);
    let t = &out["transactionDetails"];
    let unit = out["product"]["unit_amount"].as_i64().unwrap();
    assert_eq!(t["status"], "paid");
    assert_eq!(t["amount"], unit * 2);
    assert_eq!(t["amountPaid"], unit * 2);
    assert_eq!(t["currency"], out["product"]["currency"]);
    assert_eq!(t["payment"]["status"], "succeeded");
    assert!(t["payment"]["paymentIntent"]
        .as_str()
        .unwrap()
        .starts_with("pi_"));
    let events: Vec<&str> = out["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert!(
        events.contains(&"payment.succeeded") && events.contains(&"order.paid"),
        "{events:?}"
    );
    // What the SDK resolved with is what the API says.
    let o = s
        .get(
            &format!("/v1/orders/{}", t["order"].as_str().unwrap()),
            &keys.admin,
        )
        .await;
    assert_eq!(o.json["status"], "paid");
    assert_eq!(o.json["payments"][0]["id"], t["payment"]["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_made_in_the_dashboard_is_seen_through_the_api() {
    let (_db, s, keys) = demo().await;
    let p = crate::refunds::paid(&s, &keys, 2500).await;
    let id = p["id"].as_str().unwrap().to_owned();
    // Some company for it in the lists and charts: another sale and a decline.
    crate::refunds::paid(&s, &keys, 1200).await;
    let c = s
        .post(
            "/v1/customers",
            &keys.server,
            serde_json::json!({"external_id": "declines"}),
        )
        .await;
    let cid = c.json["id"].as_str().unwrap();
    s.post(
        &format!("/v1/customers/{cid}/payment_methods"),
        &keys.server,
        serde_json::json!({"payment_method": "pm_card_visa_chargeDeclined"}),
    )
    .await;
    let declined = s
        .post(
            "/v1/payments",
            &keys.server,
            serde_json::json!({"amount": 900, "currency": "usd", "method": "card", "customer": cid}),
        )
        .await;
    assert_eq!(
        declined.status,
        StatusCode::PAYMENT_REQUIRED,
        "{}",
        declined.body
    );
    let out = scenario(
        &s,
        &keys,
        "dashboard-refund",
        &[("PAYMENT", &id), ("REFUND_AMOUNT", "700")],
    );
    let refund = out["refund"].as_str().unwrap();
    let r = s.get(&format!("/v1/refunds/{refund}"), &keys.admin).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["amount"], 700);
    assert_eq!(r.json["status"], "succeeded");
    assert_eq!(r.json["payment"], id.as_str());
    let after = s.get(&format!("/v1/payments/{id}"), &keys.admin).await;
    assert_eq!(after.json["amount_refunded"], 700);
    assert_eq!(after.json["status"], "partially_refunded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_security_headers_and_no_secrets() {
    let (_db, s, keys) = demo().await;
    for path in ["/", "/admin", "/sdk/return"] {
        let r = s.http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let h = r.headers().clone();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(h["x-content-type-options"], "nosniff");
        let html = r.text().await.unwrap();
        assert!(
            !html.contains("<script>") && !html.contains("onclick="),
            "{path}: no inline script"
        );
        assert!(
            !html.contains(&keys.admin) && !html.contains(&keys.server),
            "{path}: no secret key"
        );
    }
    // The storefront carries the demo's publishable key, which is public by design.
    let home = s
        .http
        .get(s.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(home.contains(&keys.publishable));
    // The SDK, its types, and the classic-script form for a plain <script> tag.
    let module = s
        .http
        .get(s.url("/sdk/paybridge.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(module.contains("export function PayBridge"));
    let classic = s
        .http
        .get(s.url("/sdk/paybridge.js"))
        .header("sec-fetch-dest", "script")
        .header("sec-fetch-mode", "no-cors")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!classic.contains("export ") && classic.contains("window.PayBridge = PayBridge"));
    let types = s
        .http
        .get(s.url("/sdk/paybridge.d.ts"))
        .send()
        .await
        .unwrap();
    assert_eq!(types.status(), StatusCode::OK);
    // Without the demo, `/` says where things are and shows no key.
    let db2 = TestDb::new(Backend::Sqlite).await.unwrap();
    let plain = Server::start(&db2).await;
    let landing = plain
        .http
        .get(plain.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(landing.contains("/admin") && !landing.contains("pb_pk_"));
}

/// The SDK's TypeScript declarations compile, and describe what a caller writes.
#[test]
fn the_sdk_types_check() {
    let tsc = browser_dir().join("node_modules/.bin/tsc");
    assert!(
        tsc.exists(),
        "tests/browser/node_modules is missing: run scripts/test"
    );
    let out = Command::new(tsc)
        .args(["--noEmit", "-p", "tsconfig.json"])
        .current_dir(browser_dir())
        .output()
        .expect("run tsc");
    assert!(
        out.status.success(),
        "tsc:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
