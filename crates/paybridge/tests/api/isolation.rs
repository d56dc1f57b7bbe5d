//! Tenant isolation, generated from the route table: every operation in
//! `/openapi.json` is called with another app's keys against this app's objects, and
//! must answer 404 or 403. A route this test does not know how to fill in fails it, so
//! a new endpoint cannot be added without being checked here.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{AppKeys, Backend, Server, TestDb};

paybridge_testkit::on_both!(another_apps_keys_never_reach_this_apps_objects);

/// One object of every kind, in app A (also what `schemathesis.rs` fuzzes against).
pub(crate) struct Fixtures {
    pub(crate) ids: BTreeMap<&'static str, String>,
}

impl Fixtures {
    fn get(&self, kind: &str) -> &str {
        self.ids
            .get(kind)
            .unwrap_or_else(|| panic!("no fixture {kind}"))
    }
}

async fn created(s: &Server, key: &str, path: &str, body: Value) -> Value {
    let r = s.post(path, key, body).await;
    assert!(r.status.is_success(), "{path}: {}", r.body);
    r.json
}

pub(crate) async fn fixtures(s: &Server, a: &AppKeys) -> Fixtures {
    let mut ids = BTreeMap::new();
    ids.insert("app", a.id.clone());
    let endpoint = created(
        s,
        &a.admin,
        "/v1/callback_endpoints",
        json!({"url": "http://127.0.0.1:9/hooks"}),
    )
    .await;
    ids.insert("endpoint", endpoint["id"].as_str().unwrap().to_owned());
    let product = s.product(&a.admin, "Widget", 1500, "usd").await;
    ids.insert("product", product.clone());
    let plan = created(s, &a.admin, "/v1/products", json!({"name": "Plan", "unit_amount": 900, "currency": "usd", "recurring": {"interval": "month"}})).await;
    ids.insert("plan", plan["id"].as_str().unwrap().to_owned());
    let customer = created(
        s,
        &a.server,
        "/v1/customers",
        json!({"external_id": "shared-external-id"}),
    )
    .await;
    let cid = customer["id"].as_str().unwrap().to_owned();
    ids.insert("customer", cid.clone());
    let card = created(
        s,
        &a.server,
        &format!("/v1/customers/{cid}/payment_methods"),
        json!({"payment_method": "pm_card_visa"}),
    )
    .await;
    ids.insert(
        "payment_method",
        card["id"]
            .as_str()
            .or(card["payment_method"].as_str())
            .unwrap()
            .to_owned(),
    );
    let payment = created(
        s,
        &a.server,
        "/v1/payments",
        json!({"amount": 2000, "currency": "usd", "method": "card", "customer": cid}),
    )
    .await;
    ids.insert("payment", payment["id"].as_str().unwrap().to_owned());
    let refund = created(
        s,
        &a.admin,
        "/v1/refunds",
        json!({"payment": payment["id"], "amount": 100}),
    )
    .await;
    ids.insert("refund", refund["id"].as_str().unwrap().to_owned());
    let order = created(
        s,
        &a.server,
        "/v1/orders",
        json!({"currency": "usd", "line_items": [{"product": product, "quantity": 1}]}),
    )
    .await;
    ids.insert("order", order["id"].as_str().unwrap().to_owned());
    let cs = s.checkout(&a.publishable, &product, 1, json!({})).await;
    ids.insert("checkout", cs["id"].as_str().unwrap().to_owned());
    let sub = created(
        s,
        &a.server,
        "/v1/subscriptions",
        json!({"customer": cid, "product": ids["plan"]}),
    )
    .await;
    ids.insert("subscription", sub["id"].as_str().unwrap().to_owned());
    let account = created(
        s,
        &a.admin,
        "/v1/connect/accounts",
        json!({"email": "seller@example.com", "external_id": "seller-1", "country": "us"}),
    )
    .await;
    ids.insert("account", account["id"].as_str().unwrap().to_owned());
    let keys = s.get(&format!("/v1/apps/{}/keys", a.id), &a.admin).await;
    ids.insert(
        "key",
        keys.json["data"][0]["id"].as_str().unwrap().to_owned(),
    );
    let pid = ids["payment"].clone();
    let events = s
        .until(&format!("/v1/events?payment={pid}"), &a.admin, |j| {
            j["data"].as_array().is_some_and(|d| !d.is_empty())
        })
        .await;
    let event = events["data"][0]["id"].as_str().unwrap().to_owned();
    ids.insert("event", event.clone());
    let d = s
        .until(&format!("/v1/deliveries?event={event}"), &a.admin, |j| {
            j["data"].as_array().is_some_and(|d| !d.is_empty())
        })
        .await;
    ids.insert("delivery", d["data"][0]["id"].as_str().unwrap().to_owned());
    let pe = s
        .until("/v1/provider_events", &a.admin, |j| {
            j["data"].as_array().is_some_and(|d| !d.is_empty())
        })
        .await;
    ids.insert(
        "provider_event",
        pe["data"][0]["id"].as_str().unwrap().to_owned(),
    );
    ids.insert("payout", "po_isolation".into());
    Fixtures { ids }
}

/// Which fixture a path parameter names, from the segment before it.
pub(crate) fn kind_of(path: &str, param: &str) -> &'static str {
    let segments: Vec<&str> = path.split('/').collect();
    let at = segments
        .iter()
        .position(|s| *s == format!("{{{param}}}"))
        .unwrap_or_else(|| panic!("{param} not in {path}"));
    match (segments[at - 1], param) {
        ("apps", _) | ("stripe", "app_id") => "app",
        ("keys", _) => "key",
        ("products", _) => "product",
        ("customers", _) => "customer",
        ("payment_methods", _) => "payment_method",
        ("orders", _) => "order",
        ("payments", _) => "payment",
        ("refunds", _) => "refund",
        ("subscriptions", _) => "subscription",
        ("sessions", _) | ("checkout_sessions", _) => "checkout",
        ("callback_endpoints", _) => "endpoint",
        ("deliveries", _) => "delivery",
        ("provider_events", _) => "provider_event",
        ("accounts", _) => "account",
        ("payouts", _) => "payout",
        (seg, p) => panic!(
            "a route this test does not know: {path} ({seg}/{{{p}}}). Add its fixture to isolation.rs"
        ),
    }
}

/// Bodies for operations whose body names another object (no path parameter).
pub(crate) fn referencing_body(method: &str, path: &str, f: &Fixtures) -> Option<Value> {
    Some(match (method, path) {
        ("POST", "/v1/refunds") => json!({"payment": f.get("payment"), "amount": 1}),
        ("POST", "/v1/payments") => {
            json!({"amount": 500, "currency": "usd", "method": "card", "customer": f.get("customer")})
        }
        ("POST", "/v1/orders") => {
            json!({"currency": "usd", "customer": f.get("customer"), "line_items": [{"product": f.get("product"), "quantity": 1}]})
        }
        ("POST", "/v1/checkout/sessions") => {
            json!({"order": f.get("order"), "success_url": "https://x.example/ok", "cancel_url": "https://x.example/no"})
        }
        ("POST", "/v1/subscriptions") => {
            json!({"customer": f.get("customer"), "product": f.get("plan")})
        }
        ("POST", "/v1/connect/transfers") => {
            json!({"destination": f.get("account"), "amount": 100, "currency": "usd"})
        }
        _ => return None,
    })
}

/// Operations without a path parameter or a reference: another app's key acts on its
/// own data there, so what is checked is that none of app A's ids show up.
const OWN_DATA: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/v1/me"),
    ("GET", "/v1/config"),
    ("GET", "/v1/apps"),
    ("POST", "/v1/apps"),
    ("GET", "/v1/payment_config"),
    ("PUT", "/v1/payment_config"),
    ("PUT", "/v1/payment_config/signing_secret"),
    ("GET", "/v1/payment_config/status"),
    ("GET", "/v1/products"),
    ("POST", "/v1/products"),
    ("POST", "/v1/products/import"),
    ("GET", "/v1/customers"),
    ("POST", "/v1/customers"),
    ("GET", "/v1/orders"),
    ("GET", "/v1/payments"),
    ("GET", "/v1/payments/export"),
    ("GET", "/v1/refunds"),
    ("GET", "/v1/subscriptions"),
    ("GET", "/v1/events"),
    ("GET", "/v1/events/stream"),
    ("GET", "/v1/provider_events"),
    ("GET", "/v1/deliveries"),
    ("GET", "/v1/callback_endpoints"),
    ("POST", "/v1/callback_endpoints"),
    ("POST", "/v1/connect/accounts"),
    ("GET", "/v1/provider/webhook_endpoints"),
    ("GET", "/v1/reports/payments"),
];

pub(crate) fn body_for(method: &str, path: &str) -> Option<Value> {
    match method {
        "POST" | "PUT" | "PATCH" => Some(match path {
            p if p.ends_with("/complete") || p.ends_with("/confirm") => {
                json!({"card_number": "4242424242424242"})
            }
            p if p.ends_with("/payment_methods") => json!({"payment_method": "pm_card_visa"}),
            p if p.starts_with("/v1/apps/") => json!({"role": "server"}),
            p if p.starts_with("/v1/products/") => json!({"name": "stolen"}),
            p if p.ends_with("/portal_sessions") => {
                json!({"return_url": "https://shop.example/account"})
            }
            _ => json!({}),
        }),
        _ => None,
    }
}

async fn another_apps_keys_never_reach_this_apps_objects(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let other = s.sandbox_app().await;
    let f = fixtures(&s, &a).await;
    let doc = s.openapi().await;
    let a_ids: Vec<&String> = f
        .ids
        .values()
        .filter(|v| v.contains('_') && !v.starts_with("po_"))
        .collect();
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, _) in ops.as_object().unwrap() {
            let method = method.to_uppercase();
            let params: Vec<String> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(str::to_owned)
                .collect();
            if path == "/v1/webhooks/stripe/{app_id}" {
                // Not key-authenticated: an event signed with another app's secret is
                // refused at this app's URL.
                let r = s
                    .call_with(
                        Method::POST,
                        &format!("/v1/webhooks/stripe/{}", a.id),
                        None,
                        Some(json!({"id": "evt_x", "type": "charge.succeeded"})),
                        &[("stripe-signature", "t=1,v1=00")],
                    )
                    .await;
                assert!(r.status.is_client_error(), "{path}: {}", r.body);
                checked += 1;
                continue;
            }
            let mut concrete = path.clone();
            for p in &params {
                concrete = concrete.replace(&format!("{{{p}}}"), f.get(kind_of(path, p)));
            }
            if path.contains("/payouts/") {
                concrete.push_str(&format!("?account={}", f.get("account")));
            }
            let reference = referencing_body(&method, path, &f);
            if params.is_empty() && reference.is_none() {
                assert!(
                    OWN_DATA.contains(&(method.as_str(), path.as_str())),
                    "a route this test does not know: {method} {path}. If it acts only on the caller's own data, add it to OWN_DATA; if it names other objects, to referencing_body"
                );
                if method == "GET" && path != "/v1/events/stream" && path != "/metrics" {
                    let r = s.get(&concrete, &other.admin).await;
                    for id in &a_ids {
                        assert!(
                            !r.body.contains(id.as_str()),
                            "{path} with another app's key shows {id}: {}",
                            r.body
                        );
                    }
                }
                checked += 1;
                continue;
            }
            let body = reference.clone().or_else(|| body_for(&method, path));
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            for key in [&other.admin, &other.server, &other.publishable] {
                let r = s.call(m.clone(), &concrete, Some(key), body.clone()).await;
                assert!(
                    r.status == StatusCode::NOT_FOUND || r.status == StatusCode::FORBIDDEN,
                    "{method} {concrete} with another app's {} key answered {}: {}",
                    &key[..5],
                    r.status,
                    r.body
                );
            }
            // The same read with the owner's key works, so the 404s above are about
            // the key, not about a wrong id.
            if method == "GET" && !path.ends_with("/stream") {
                let r = s.get(&concrete, &a.admin).await;
                assert_eq!(
                    r.status,
                    StatusCode::OK,
                    "{concrete} with its own app's key: {}",
                    r.body
                );
            }
            checked += 1;
        }
    }
    eprintln!("{checked} operations checked");
    assert!(checked >= 70, "only {checked} operations checked");
    // Upserting a customer on the same external id makes the other app its own.
    let c = s
        .post(
            "/v1/customers",
            &other.server,
            json!({"external_id": "shared-external-id"}),
        )
        .await;
    assert_ne!(c.json["id"].as_str().unwrap(), f.get("customer"));
    // And nothing of app A changed.
    let p = s
        .get(&format!("/v1/payments/{}", f.get("payment")), &a.admin)
        .await;
    assert_eq!(p.json["amount_refunded"], 100);
    let prod = s
        .get(&format!("/v1/products/{}", f.get("product")), &a.admin)
        .await;
    assert_eq!(prod.json["name"], "Widget");
}
