//! The `stripe` provider: against localstripe (customers, payment methods, payment
//! intents with automatic and manual capture, its signed webhooks, the reconciler),
//! and against the recording stub for what localstripe lacks (Checkout Sessions,
//! Prices) and for how failures are retried and mapped.

use std::process::Command;
use std::time::Duration;

use paybridge_core::stripe::signature;
use paybridge_testkit::LocalStripe;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{AppKeys, Backend, Resp, Server, TestDb};
use crate::stub::{fixture, stripe_error, Recorded, Stub};

paybridge_testkit::on_both!(
    localstripe_customers_cards_and_payment_intents,
    localstripe_webhooks_reach_paybridge,
    the_reconciler_catches_up_without_webhooks,
    checkout_sessions_send_stripes_exact_parameters,
    failed_calls_are_retried_with_the_same_idempotency_key,
    prices_are_imported_as_products,
    an_event_before_its_object_is_applied_later,
);

pub(crate) const SIGNING: &str = "whsec_stripe_provider_tests_000000";

pub(crate) async fn stripe_app(s: &Server) -> AppKeys {
    let a = s.app("test").await;
    let r = s
        .put(
            "/v1/payment_config",
            &a.admin,
            json!({"provider": "stripe", "provider_public_key": "pk_test_paybridge", "provider_secret_key": "sk_test_paybridge_localstripe"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = s
        .put(
            "/v1/payment_config/signing_secret",
            &a.admin,
            json!({"signing_secret": SIGNING}),
        )
        .await;
    assert_eq!(r.json["configured"], true);
    a
}

pub(crate) async fn stripe_server(db: &TestDb, base: &str, extra: &[(&str, &str)]) -> Server {
    let mut env = vec![
        ("PAYBRIDGE_STRIPE_API_BASE", base),
        ("PAYBRIDGE_STRIPE_RETRY_BASE_MS", "20"),
        ("PAYBRIDGE_STRIPE_TIMEOUT", "10"),
    ];
    env.extend_from_slice(extra);
    Server::start_with(db, &env).await
}

/// Calls localstripe directly, as a customer's browser or Stripe.js would.
pub(crate) async fn localstripe(ls: &LocalStripe, path: &str, form: &[(&str, &str)]) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", ls.base))
        .bearer_auth("sk_test_paybridge_localstripe")
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert!(status.is_success(), "localstripe {path}: {text}");
    v
}

pub(crate) async fn test_card(ls: &LocalStripe, number: &str) -> String {
    let pm = localstripe(
        ls,
        "/v1/payment_methods",
        &[
            ("type", "card"),
            ("card[number]", number),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2034"),
            ("card[cvc]", "123"),
        ],
    )
    .await;
    pm["id"].as_str().unwrap().to_owned()
}

async fn localstripe_customers_cards_and_payment_intents(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let ls = LocalStripe::start().await;
    let s = stripe_server(&db, &ls.base, &[]).await;
    let a = stripe_app(&s).await;
    let c = s
        .post(
            "/v1/customers",
            &a.server,
            json!({"external_id": "ls-1", "email": "grace@example.com"}),
        )
        .await;
    assert_eq!(c.status, StatusCode::CREATED, "{}", c.body);
    let cid = c.json["id"].as_str().unwrap().to_owned();
    assert!(c.json["provider_customer_id"]
        .as_str()
        .unwrap()
        .starts_with("cus_"));

    let card = s
        .post(
            &format!("/v1/customers/{cid}/payment_methods"),
            &a.server,
            json!({"payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(card.status, StatusCode::CREATED, "{}", card.body);
    assert_eq!(
        (
            card.json["brand"].as_str(),
            card.json["last4"].as_str(),
            card.json["default"].as_bool()
        ),
        (Some("visa"), Some("4242"), Some(true))
    );

    // Automatic capture: localstripe's answer settles it.
    let p = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 2000, "currency": "usd", "method": "card", "customer": cid}),
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    assert_eq!(p.json["status"], "succeeded");
    assert!(p.json["provider"]["payment_intent"]
        .as_str()
        .unwrap()
        .starts_with("pi_"));

    // Manual capture: authorised, then partly captured.
    let p = s.post("/v1/payments", &a.server, json!({"amount": 1000, "currency": "usd", "method": "card", "customer": cid, "capture": "manual"})).await;
    assert_eq!(p.json["status"], "requires_capture", "{}", p.body);
    assert_eq!(p.json["amount_capturable"], 1000);
    let pid = p.json["id"].as_str().unwrap();
    let cap = s
        .post(
            &format!("/v1/payments/{pid}/capture"),
            &a.server,
            json!({"amount": 600}),
        )
        .await;
    assert_eq!(cap.status, StatusCode::OK, "{}", cap.body);
    assert_eq!(
        (
            cap.json["status"].as_str(),
            cap.json["amount_captured"].as_i64()
        ),
        (Some("succeeded"), Some(600))
    );

    // Manual capture, then cancel (void).
    let p = s.post("/v1/payments", &a.server, json!({"amount": 700, "currency": "usd", "method": "card", "customer": cid, "capture": "manual"})).await;
    let pid = p.json["id"].as_str().unwrap();
    let r = s
        .post(&format!("/v1/payments/{pid}/cancel"), &a.server, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json["status"], "canceled");

    // A card that attaches but is declined when charged: 402, payment failed.
    let declining = test_card(&ls, "4000000000000341").await;
    let att = s
        .post(
            &format!("/v1/customers/{cid}/payment_methods"),
            &a.server,
            json!({"payment_method": declining, "default": true}),
        )
        .await;
    assert_eq!(att.status, StatusCode::CREATED, "{}", att.body);
    let d = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 500, "currency": "usd", "method": "card", "customer": cid}),
        )
        .await;
    assert_eq!(d.status, StatusCode::PAYMENT_REQUIRED, "{}", d.body);
    assert_eq!(d.error().1, "card_declined");
    let failed = s
        .get(
            &format!("/v1/payments?customer={cid}&status=failed"),
            &a.server,
        )
        .await;
    assert_eq!(failed.json["data"].as_array().unwrap().len(), 1);

    // A payment intent for a custom card form: a client secret, confirmed by the browser.
    let p = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 1500, "currency": "eur", "method": "payment_intent"}),
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    assert_eq!(p.json["status"], "pending");
    let secret = p.json["client_secret"].as_str().unwrap();
    assert!(secret.contains("_secret_"));
    assert!(!db.all_stored_text().await.contains(secret));
    assert!(!db
        .all_stored_text()
        .await
        .contains("sk_test_paybridge_localstripe"));
}

async fn localstripe_webhooks_reach_paybridge(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let ls = LocalStripe::start().await;
    let s = stripe_server(&db, &ls.base, &[]).await;
    let a = stripe_app(&s).await;
    let hook = format!("{}/v1/webhooks/stripe/{}", s.base, a.id);
    localstripe(
        &ls,
        "/_config/webhooks/paybridge",
        &[("url", &hook), ("secret", SIGNING)],
    )
    .await;
    let p = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 3100, "currency": "usd", "method": "payment_intent"}),
        )
        .await;
    let pid = p.json["id"].as_str().unwrap().to_owned();
    let pi = p.json["provider"]["payment_intent"]
        .as_str()
        .unwrap()
        .to_owned();
    // The browser confirms it at "Stripe": set the card, then confirm.
    let card = test_card(&ls, "4242424242424242").await;
    localstripe(
        &ls,
        &format!("/v1/payment_intents/{pi}"),
        &[("payment_method", &card)],
    )
    .await;
    localstripe(&ls, &format!("/v1/payment_intents/{pi}/confirm"), &[]).await;
    // localstripe's signed payment_intent.succeeded reaches paybridge and settles it.
    let paid = s
        .until(&format!("/v1/payments/{pid}"), &a.server, |p| {
            p["status"] == "succeeded"
        })
        .await;
    assert_eq!(paid["amount_captured"], 3100);
    let events = s
        .get(
            "/v1/provider_events?type=payment_intent.succeeded",
            &a.admin,
        )
        .await;
    let e = &events.json["data"][0];
    assert_eq!(e["outcome"], "processed", "{}", events.body);
    assert!(e["id"].as_str().unwrap().starts_with("evt_"));
}

async fn the_reconciler_catches_up_without_webhooks(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let ls = LocalStripe::start().await;
    let mut s = stripe_server(&db, &ls.base, &[("PAYBRIDGE_RECONCILE_AFTER", "0")]).await;
    let a = stripe_app(&s).await;
    let mut started = Vec::new();
    for amount in [1100, 1200] {
        let p = s
            .post(
                "/v1/payments",
                &a.server,
                json!({"amount": amount, "currency": "usd", "method": "payment_intent"}),
            )
            .await;
        let pi = p.json["provider"]["payment_intent"]
            .as_str()
            .unwrap()
            .to_owned();
        let card = test_card(&ls, "4242424242424242").await;
        localstripe(
            &ls,
            &format!("/v1/payment_intents/{pi}"),
            &[("payment_method", &card)],
        )
        .await;
        localstripe(&ls, &format!("/v1/payment_intents/{pi}/confirm"), &[]).await;
        started.push(p.json["id"].as_str().unwrap().to_owned());
    }
    // No webhook is registered: paybridge has not heard.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.get(&format!("/v1/payments/{}", started[0]), &a.server)
            .await
            .json["status"],
        "pending"
    );
    // `paybridge reconcile` asks and applies, once.
    s.kill9();
    let master_key = db.master_key.clone();
    let out = Command::new(env!("CARGO_BIN_EXE_paybridge"))
        .args(["reconcile", "--database-url", &db.url])
        .env("PAYBRIDGE_STRIPE_API_BASE", &ls.base)
        .env("PAYBRIDGE_RECONCILE_AFTER", "0")
        .env(
            "PAYBRIDGE_MASTER_KEY",
            if b == Backend::Postgres {
                master_key.as_str()
            } else {
                ""
            },
        )
        .current_dir(db.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["changed"], 2, "{report}");
    s.restart().await;
    for id in &started {
        let p = s.get(&format!("/v1/payments/{id}"), &a.server).await;
        assert_eq!(p.json["status"], "succeeded", "{}", p.body);
    }
    assert_eq!(
        s.event_types(&a.admin, "type=payment.succeeded")
            .await
            .len(),
        2
    );
}

fn intent_answer(id: &str, amount: i64, currency: &str, status: &str) -> Value {
    fixture(
        "payment_intent",
        json!({"id": id, "amount": amount, "currency": currency, "status": status, "amount_received": if status == "succeeded" { amount } else { 0 },
               "amount_capturable": 0, "last_payment_error": null, "canceled_at": null, "latest_charge": null, "transfer_data": null,
               "client_secret": format!("{id}_secret_stub"), "metadata": {}}),
    )
}

fn session_answer(req: &Recorded, id: &str) -> Value {
    let mut total = 0;
    for i in 0.. {
        let Some(q) = req.form_get(&format!("line_items[{i}][quantity]")) else {
            break;
        };
        let unit: i64 = req
            .form_get(&format!("line_items[{i}][price_data][unit_amount]"))
            .map(|u| u.parse().unwrap())
            .unwrap_or(2500);
        total += unit * q.parse::<i64>().unwrap();
    }
    fixture(
        "checkout.session",
        json!({"id": id, "url": format!("https://checkout.stripe.com/c/pay/{id}"), "status": "open", "payment_status": "unpaid",
               "amount_total": total, "currency": req.form_get("line_items[0][price_data][currency]").unwrap_or("usd"),
               "payment_intent": null, "customer": req.form_get("customer"), "mode": "payment"}),
    )
}

async fn checkout_sessions_send_stripes_exact_parameters(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let stub = Stub::start(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/v1/customers") => (
            200,
            fixture(
                "customer",
                json!({"id": "cus_stub_1", "email": req.form_get("email")}),
            ),
        ),
        ("POST", "/v1/checkout/sessions") => (200, session_answer(req, "cs_test_stub_1")),
        _ => (
            404,
            stripe_error(
                "invalid_request_error",
                "resource_missing",
                "no such route in the stub",
            ),
        ),
    })
    .await;
    let s = stripe_server(&db, &stub.base, &[]).await;
    let a = stripe_app(&s).await;
    let shirt = s
        .post("/v1/products", &a.admin, json!({"name": "Shirt", "unit_amount": 2500, "currency": "usd", "provider_price_id": "price_shirt"}))
        .await
        .json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = s
        .post(
            "/v1/customers",
            &a.server,
            json!({"external_id": "stub-1", "email": "lin@example.com"}),
        )
        .await;
    let cid = c.json["id"].as_str().unwrap().to_owned();
    let r = s
        .post(
            "/v1/checkout/sessions",
            &a.server,
            json!({"line_items": [{"product": shirt, "quantity": 2}], "customer": cid, "save_card": true, "capture": "manual",
                   "success_url": "https://shop.example/ok", "cancel_url": "https://shop.example/cart", "expires_in": 3600,
                   "provider_options": {"locale": "fr", "billing_address_collection": "required"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        r.json["url"],
        "https://checkout.stripe.com/c/pay/cs_test_stub_1"
    );
    let (checkout, order, payment) = (
        r.json["id"].as_str().unwrap(),
        r.json["order"].as_str().unwrap(),
        r.json["payment"].as_str().unwrap(),
    );

    let calls = stub.calls("POST", "/v1/checkout/sessions");
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(
        call.header("authorization"),
        Some("Bearer sk_test_paybridge_localstripe")
    );
    assert_eq!(call.header("stripe-version"), Some("2024-06-20"));
    assert_eq!(
        call.header("idempotency-key"),
        Some(format!("pb_{checkout}_create").as_str())
    );
    assert_eq!(
        call.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let mut form = call.form.clone();
    form.sort();
    let expires_at = call.form_get("expires_at").unwrap().to_owned();
    let mut expected: Vec<(String, String)> = [
        ("mode", "payment"),
        ("success_url", "https://shop.example/ok"),
        ("cancel_url", "https://shop.example/cart"),
        ("expires_at", expires_at.as_str()),
        ("client_reference_id", order),
        ("customer", "cus_stub_1"),
        ("line_items[0][price]", "price_shirt"),
        ("line_items[0][quantity]", "2"),
        ("metadata[pb_app]", a.id.as_str()),
        ("metadata[pb_order]", order),
        ("metadata[pb_payment]", payment),
        ("metadata[pb_checkout]", checkout),
        ("payment_intent_data[capture_method]", "manual"),
        ("payment_intent_data[setup_future_usage]", "off_session"),
        ("payment_intent_data[metadata][pb_app]", a.id.as_str()),
        ("payment_intent_data[metadata][pb_order]", order),
        ("payment_intent_data[metadata][pb_payment]", payment),
        ("payment_intent_data[metadata][pb_checkout]", checkout),
        ("locale", "fr"),
        ("billing_address_collection", "required"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    expected.sort();
    assert_eq!(form, expected);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((expires_at.parse::<i64>().unwrap() - now - 3600).abs() < 5);
    // The customer was created with our ids in its metadata, under its own key.
    let cust = &stub.calls("POST", "/v1/customers")[0];
    assert_eq!(cust.form_get("metadata[pb_customer]"), Some(cid.as_str()));
    assert_eq!(
        cust.header("idempotency-key"),
        Some(format!("pb_{cid}_create").as_str())
    );

    // A session whose total is not ours is refused and expired at once.
    let stub2 = Stub::start(|req, _| match req.path.as_str() {
        "/v1/checkout/sessions" => {
            let mut s = session_answer(req, "cs_test_wrong");
            s["amount_total"] = json!(1);
            (200, s)
        }
        p if p.ends_with("/expire") => (
            200,
            fixture(
                "checkout.session",
                json!({"id": "cs_test_wrong", "status": "expired"}),
            ),
        ),
        _ => (
            404,
            stripe_error("invalid_request_error", "resource_missing", "none"),
        ),
    })
    .await;
    drop(s);
    let s = stripe_server(&db, &stub2.base, &[]).await;
    let r = s
        .post(
            "/v1/checkout/sessions",
            &a.publishable,
            json!({"line_items": [{"product": shirt}], "success_url": "https://shop.example/ok", "cancel_url": "https://shop.example/cart"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    assert_eq!(
        stub2
            .calls("POST", "/v1/checkout/sessions/cs_test_wrong/expire")
            .len(),
        1
    );
    let failed = s.get("/v1/payments?status=failed", &a.server).await;
    assert_eq!(failed.json["data"].as_array().unwrap().len(), 1);
}

async fn failed_calls_are_retried_with_the_same_idempotency_key(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let stub = Stub::start(|req, n| match req.path.as_str() {
        "/v1/payment_intents" if req.form_get("amount") == Some("1000") => match n {
            0 => (500, stripe_error("api_error", "internal", "boom")),
            1 => (429, stripe_error("rate_limit_error", "rate_limit", "slow down")),
            _ => (200, intent_answer("pi_retry_1", 1000, "usd", "requires_payment_method")),
        },
        "/v1/payment_intents" if req.form_get("amount") == Some("2000") => {
            (400, stripe_error("invalid_request_error", "parameter_invalid", "No such currency mode"))
        }
        "/v1/payment_intents" => (402, json!({"error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
            "payment_intent": intent_answer("pi_declined", 3000, "usd", "requires_payment_method")}})),
        _ => (404, stripe_error("invalid_request_error", "resource_missing", "none")),
    })
    .await;
    let s = stripe_server(&db, &stub.base, &[]).await;
    let a = stripe_app(&s).await;
    let r = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 1000, "currency": "usd", "method": "payment_intent"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json["provider"]["payment_intent"], "pi_retry_1");
    let calls: Vec<Recorded> = stub
        .calls("POST", "/v1/payment_intents")
        .into_iter()
        .filter(|c| c.form_get("amount") == Some("1000"))
        .collect();
    assert_eq!(calls.len(), 3, "a 500 and a 429 are retried");
    let key = calls[0].header("idempotency-key").unwrap();
    assert_eq!(key, format!("pb_{}_create", r.json["id"].as_str().unwrap()));
    assert!(calls
        .iter()
        .all(|c| c.header("idempotency-key") == Some(key) && c.form == calls[0].form));

    // A 400 is not retried; the payment fails; the caller gets a 502 naming the cause.
    let r = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 2000, "currency": "usd", "method": "payment_intent"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.error().0, "provider_error");
    assert_eq!(
        stub.calls("POST", "/v1/payment_intents")
            .iter()
            .filter(|c| c.form_get("amount") == Some("2000"))
            .count(),
        1
    );
    // A decline is a 402 with the decline code; the intent it carried is recorded.
    let r = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 3000, "currency": "usd", "method": "payment_intent"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.json["error"]["decline_code"], "insufficient_funds");
    let failed = s.get("/v1/payments?status=failed", &a.server).await;
    let ids: Vec<&str> = failed.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["provider"]["payment_intent"].as_str().unwrap_or(""))
        .collect();
    assert!(ids.contains(&"pi_declined"), "{}", failed.body);
}

async fn prices_are_imported_as_products(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let stub = Stub::start(|req, n| match req.path.as_str() {
        "/v1/prices" => {
            let price = |id: &str, amount: Option<i64>, name: &str, recurring: Value| {
                fixture("price", json!({"id": id, "unit_amount": amount, "currency": "usd", "active": true, "recurring": recurring,
                    "product": fixture("product", json!({"id": format!("prod_{id}"), "name": name, "active": true, "description": "From Stripe"}))}))
            };
            if req.query.iter().any(|(k, _)| k == "starting_after") {
                (200, json!({"object": "list", "has_more": false, "data": [
                    price("price_c", None, "Metered", Value::Null),
                    price("price_d", Some(999), if n > 1 { "Mug (renamed)" } else { "Mug" }, Value::Null)]}))
            } else {
                (200, json!({"object": "list", "has_more": true, "data": [
                    price("price_a", Some(1200), "Monthly", json!({"interval": "month", "interval_count": 1})),
                    price("price_b", Some(500), "Stickers", Value::Null)]}))
            }
        }
        _ => (404, stripe_error("invalid_request_error", "resource_missing", "none")),
    })
    .await;
    let s = stripe_server(&db, &stub.base, &[]).await;
    let a = stripe_app(&s).await;
    let r = s.post("/v1/products/import", &a.admin, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json, json!({"created": 3, "updated": 0, "skipped": 1}));
    let first = &stub.calls("GET", "/v1/prices")[0];
    let q = |k: &str| {
        first
            .query
            .iter()
            .find(|(x, _)| x == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        (q("active"), q("limit"), q("expand[]")),
        (Some("true"), Some("100"), Some("data.product"))
    );
    assert_eq!(
        stub.calls("GET", "/v1/prices")[1]
            .query
            .iter()
            .find(|(k, _)| k == "starting_after")
            .map(|(_, v)| v.as_str()),
        Some("price_b")
    );
    let products = s.get("/v1/products?limit=100", &a.admin).await;
    let monthly = products.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider_price_id"] == "price_a")
        .unwrap()
        .clone();
    assert_eq!(
        monthly["recurring"],
        json!({"interval": "month", "interval_count": 1})
    );
    assert_eq!(monthly["provider_product_id"], "prod_price_a");
    // Again, with the CLI: updated, not duplicated.
    drop(s);
    let out = Command::new(env!("CARGO_BIN_EXE_paybridge"))
        .args([
            "products",
            "import",
            "--app",
            &a.id,
            "--database-url",
            &db.url,
        ])
        .env("PAYBRIDGE_STRIPE_API_BASE", &stub.base)
        .env(
            "PAYBRIDGE_MASTER_KEY",
            if b == Backend::Postgres {
                db.master_key.as_str()
            } else {
                ""
            },
        )
        .current_dir(db.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        serde_json::from_str::<Value>(stdout.lines().last().unwrap()).unwrap(),
        json!({"created": 0, "updated": 3, "skipped": 1})
    );
    assert_eq!(db.scalar("SELECT COUNT(*) FROM products").await, 3);
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM products WHERE name = 'Mug (renamed)'")
            .await,
        1
    );
}

async fn an_event_before_its_object_is_applied_later(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let stub = Stub::start(|req, _| match req.path.as_str() {
        "/v1/payment_intents" => (
            200,
            intent_answer("pi_early_bird", 800, "usd", "requires_payment_method"),
        ),
        _ => (
            404,
            stripe_error("invalid_request_error", "resource_missing", "none"),
        ),
    })
    .await;
    let s = stripe_server(&db, &stub.base, &[("PAYBRIDGE_HOUSEKEEPING_INTERVAL", "1")]).await;
    let a = stripe_app(&s).await;
    // The event comes first, about an intent paybridge has not heard of (no metadata).
    let body = json!({"id": "evt_early", "object": "event", "type": "payment_intent.succeeded", "created": 1, "livemode": false,
        "data": {"object": {"id": "pi_early_bird", "object": "payment_intent", "status": "succeeded", "amount": 800, "amount_received": 800, "currency": "usd"}}})
    .to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let r = Resp::from(
        s.http
            .post(s.url(&format!("/v1/webhooks/stripe/{}", a.id)))
            .header(
                "stripe-signature",
                signature::sign(body.as_bytes(), SIGNING.as_bytes(), now),
            )
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        s.get("/v1/provider_events/evt_early", &a.admin).await.json["outcome"],
        "pending"
    );
    // Then the payment whose intent it is; the waiting event is applied.
    let p = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 800, "currency": "usd", "method": "payment_intent"}),
        )
        .await;
    let pid = p.json["id"].as_str().unwrap();
    s.until(&format!("/v1/payments/{pid}"), &a.server, |p| {
        p["status"] == "succeeded"
    })
    .await;
    assert_eq!(
        s.get("/v1/provider_events/evt_early", &a.admin).await.json["outcome"],
        "processed"
    );
}
