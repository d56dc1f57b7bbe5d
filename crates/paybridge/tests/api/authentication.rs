//! 3-D Secure recovery (issue 17, part 3): a charge the bank wants authenticated is
//! recorded `requires_action` with the link of paybridge's page, told as
//! `payment.requires_action` (event, callback, stream), and moves on once the customer
//! authenticates. On the sandbox end to end (off-session charges, renewals), on Stripe
//! against localstripe (which answers `requires_action` for 4000 0025 0000 3155) and
//! against the recording stub with Stripe's own off-session shape
//! (`authentication_required`) and published objects, a Stripe renewal through Stripe's
//! invoice events, and the sandbox's page in Chromium at 1280 and 390 px.

use std::time::Duration;

use paybridge_core::stripe::signature;
use paybridge_testkit::LocalStripe;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{AppKeys, Backend, Receiver, Resp, Server, Sse, TestDb};
use crate::stripe::{localstripe, stripe_app, stripe_server, test_card, SIGNING};
use crate::stub::{fixture, stripe_error, Stub};

paybridge_testkit::on_both!(
    an_off_session_charge_that_needs_authentication_is_completed_on_our_page,
    failed_authentication_fails_the_payment,
    a_renewal_that_needs_authentication_is_paid_once_authenticated,
    localstripe_answers_requires_action_and_the_page_loads_stripe_js,
    stripes_authentication_required_and_its_events,
    a_stripe_renewal_that_needs_authentication,
    the_reconciler_moves_on_an_authenticated_payment_whose_webhook_was_lost,
);

/// A customer with `card` saved as their default.
async fn customer_with(s: &Server, a: &AppKeys, ext: &str, card: &str) -> String {
    let c = s
        .post("/v1/customers", &a.server, json!({"external_id": ext}))
        .await;
    assert!(c.status.is_success(), "{}", c.body);
    let cid = c.json["id"].as_str().unwrap().to_owned();
    let pm = s
        .post(
            &format!("/v1/customers/{cid}/payment_methods"),
            &a.server,
            json!({"payment_method": card}),
        )
        .await;
    assert!(pm.status.is_success(), "{}", pm.body);
    cid
}

/// Charges the customer's saved card off-session.
async fn charge(s: &Server, a: &AppKeys, customer: &str, amount: i64) -> Resp {
    s.post(
        "/v1/payments",
        &a.server,
        json!({"amount": amount, "currency": "usd", "method": "card", "customer": customer}),
    )
    .await
}

/// GET of a full URL paybridge handed out (the page), without a key.
async fn fetch(s: &Server, url: &str) -> (StatusCode, String, reqwest::header::HeaderMap) {
    let r = s.http.get(url).send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    (status, r.text().await.unwrap(), headers)
}

/// Posts the sandbox page's form, as its buttons do.
async fn answer(s: &Server, url: &str, outcome: &str) -> (StatusCode, String) {
    let u = reqwest::Url::parse(url).unwrap();
    let token = u
        .query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let r = s
        .http
        .post(format!("{}{}", s.base, u.path()))
        .form(&[("token", token.as_str()), ("outcome", outcome)])
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.text().await.unwrap())
}

/// The payment's event types, oldest first, without `payment.pending`: the provider's
/// `payment_intent.created` may be delivered before our own call's answer is recorded
/// (then the payment was pending a moment first), or after it (then it changes nothing).
async fn payment_events(s: &Server, a: &AppKeys, filter: &str) -> Vec<String> {
    let mut v = s.event_types(&a.admin, filter).await;
    v.retain(|t| t != "payment.pending");
    v
}

fn next_action_url(p: &Value) -> String {
    assert_eq!(p["status"], "requires_action", "{p}");
    assert_eq!(p["next_action"]["type"], "authenticate", "{p}");
    p["next_action"]["url"].as_str().unwrap().to_owned()
}

async fn an_off_session_charge_that_needs_authentication_is_completed_on_our_page(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let receiver = Receiver::start().await;
    let e = s
        .post(
            "/v1/callback_endpoints",
            &a.admin,
            json!({"url": receiver.url(), "events": ["payment.requires_action", "payment.succeeded"]}),
        )
        .await;
    assert_eq!(e.status, StatusCode::CREATED, "{}", e.body);
    receiver
        .control(json!({"secrets": [e.json["secret"].as_str().unwrap()]}))
        .await;
    let mut stream = Sse::open(&s, "/v1/events/stream", &a.server, None).await;
    let cid = customer_with(&s, &a, "3ds-1", "4000002760003184").await;

    // The charge does not fail quietly: it answers `requires_action` with our page.
    let p = charge(&s, &a, &cid, 2_500).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    let url = next_action_url(&p.json);
    let pid = p.json["id"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!(
            "{}/pay/authenticate/{}/{pid}?token=",
            s.base, a.id
        )),
        "{url}"
    );
    // Told as an event, on the live stream and as a signed callback, with the link.
    let events = s
        .get(
            &format!("/v1/events?payment={pid}&type=payment.requires_action"),
            &a.server,
        )
        .await;
    let ev = &events.json["data"][0];
    assert_eq!(ev["data"]["object"]["next_action"]["url"], url.as_str());
    let got = stream.until_type("payment.requires_action", 10).await;
    assert_eq!(
        got.last().unwrap().1["data"]["object"]["next_action"]["url"],
        url.as_str()
    );
    let calls = receiver
        .until(10, |g| {
            g.iter()
                .any(|c| c["type"] == "payment.requires_action" && c["status"] == 200)
        })
        .await;
    let call = calls
        .iter()
        .find(|c| c["type"] == "payment.requires_action")
        .unwrap();
    assert_eq!(call["verified"], true);
    assert_eq!(call["event_id"], ev["id"]);
    // The payment holds its order until the customer answers: a second charge of the
    // order is refused.
    let order = p.json["order"].as_str().unwrap();
    let again = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"order": order, "method": "card", "customer": cid}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);

    // The page: the amount, the shop and the card; nothing about the customer.
    let (status, html, headers) = fetch(&s, &url).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("$25.00") && html.contains("test app"),
        "{html}"
    );
    assert!(html.contains("•••• 3184"), "{html}");
    assert!(
        html.contains("id=complete") && html.contains("id=fail"),
        "{html}"
    );
    assert!(!html.contains(&cid) && !html.contains("3ds-1"), "{html}");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    // Without the right token it is the page of nothing at all.
    for bad in [
        url.replace("token=", "token=0"),
        url.split('?').next().unwrap().to_owned(),
        url.replace(&pid, "payment_01aaaaaaaaaaaaaaaaaaaaaaaa"),
    ] {
        let (status, html, _) = fetch(&s, &bad).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}: {html}");
        assert!(!html.contains("$25.00"));
    }
    let (status, _) = answer(&s, &url.replace("token=", "token=0"), "complete").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Complete: the sandbox's events settle it as a webhook would.
    let (status, html) = answer(&s, &url, "complete").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Authentication complete"), "{html}");
    let paid = s
        .until(&format!("/v1/payments/{pid}"), &a.server, |p| {
            p["status"] == "succeeded"
        })
        .await;
    assert_eq!(paid["amount_captured"], 2_500);
    assert_eq!(paid["next_action"], Value::Null);
    // Twice is harmless: nothing more happens, the page says how it stands.
    let (status, html) = answer(&s, &url, "complete").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("This payment is complete"), "{html}");
    let (_, html, _) = fetch(&s, &url).await;
    assert!(html.contains("This payment is complete"), "{html}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        payment_events(&s, &a, &format!("payment={pid}")).await,
        ["payment.requires_action", "payment.succeeded"]
    );
    let order = s.get(&format!("/v1/orders/{order}"), &a.server).await;
    assert_eq!(order.json["status"], "paid", "{}", order.body);
    receiver
        .until(10, |g| {
            g.iter()
                .any(|c| c["type"] == "payment.succeeded" && c["status"] == 200)
        })
        .await;
}

async fn failed_authentication_fails_the_payment(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    // 4000 0025 0000 3155 asks for authentication only without the customer.
    let cid = customer_with(&s, &a, "3ds-2", "4000002500003155").await;
    let p = charge(&s, &a, &cid, 1_000).await;
    let url = next_action_url(&p.json);
    let pid = p.json["id"].as_str().unwrap().to_owned();
    let (status, html) = answer(&s, &url, "fail").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Authentication failed"), "{html}");
    let failed = s
        .until(&format!("/v1/payments/{pid}"), &a.server, |p| {
            p["status"] == "failed"
        })
        .await;
    assert_eq!(
        failed["failure"]["code"], "payment_intent_authentication_failure",
        "{failed}"
    );
    assert_eq!(
        payment_events(&s, &a, &format!("payment={pid}")).await,
        ["payment.requires_action", "payment.failed"]
    );
    // The order is free again (a new card, or the customer on-session).
    let (_, html) = answer(&s, &url, "complete").await;
    assert!(html.contains("was not made"), "{html}");
    let still = s.get(&format!("/v1/payments/{pid}"), &a.server).await;
    assert_eq!(still.json["status"], "failed");
    // A payment waiting on its customer can also be cancelled.
    let p = charge(&s, &a, &cid, 700).await;
    let pid = p.json["id"].as_str().unwrap().to_owned();
    let url = next_action_url(&p.json);
    let c = s
        .post(&format!("/v1/payments/{pid}/cancel"), &a.server, json!({}))
        .await;
    assert_eq!(c.json["status"], "canceled", "{}", c.body);
    let (_, html, _) = fetch(&s, &url).await;
    assert!(html.contains("was canceled"), "{html}");
}

async fn a_renewal_that_needs_authentication_is_paid_once_authenticated(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let pro = s
        .post("/v1/products", &a.admin, json!({"name": "Pro", "unit_amount": 1_500, "currency": "usd", "recurring": {"interval": "month"}}))
        .await;
    let pro = pro.json["id"].as_str().unwrap().to_owned();
    // Started on the checkout page (the customer is there), with a card whose bank
    // asks for authentication when charged without them.
    let cs = s
        .checkout(&a.server, &pro, 1, json!({"mode": "subscription"}))
        .await;
    let r = s
        .complete_checkout(&a.server, &cs, "4000002500003155")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let subs = s
        .until("/v1/subscriptions", &a.server, |l| {
            l["data"][0]["status"] == "active"
        })
        .await;
    let sid = subs["data"][0]["id"].as_str().unwrap().to_owned();
    // The renewal needs the customer: past due, its payment `requires_action`.
    let r = s
        .post(
            &format!("/v1/sandbox/subscriptions/{sid}/renew"),
            &a.server,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let waiting = s
        .until("/v1/payments?status=requires_action", &a.server, |l| {
            l["data"].as_array().is_some_and(|d| d.len() == 1)
        })
        .await;
    let p = &waiting["data"][0];
    assert_eq!(
        (p["method"].as_str(), p["amount"].as_i64()),
        (Some("subscription"), Some(1_500))
    );
    let url = next_action_url(p);
    let pid = p["id"].as_str().unwrap().to_owned();
    let order = p["order"].as_str().unwrap().to_owned();
    s.until(&format!("/v1/subscriptions/{sid}"), &a.server, |x| {
        x["status"] == "past_due"
    })
    .await;
    assert_eq!(
        s.get(&format!("/v1/orders/{order}"), &a.server).await.json["status"],
        "open"
    );
    // Complete: the invoice is paid, the renewal's order too, the subscription active.
    let (status, html) = answer(&s, &url, "complete").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    s.until(&format!("/v1/orders/{order}"), &a.server, |o| {
        o["status"] == "paid"
    })
    .await;
    s.until(&format!("/v1/subscriptions/{sid}"), &a.server, |x| {
        x["status"] == "active"
    })
    .await;
    let paid = s.get(&format!("/v1/payments/{pid}"), &a.server).await;
    assert_eq!(
        (
            paid.json["status"].as_str(),
            paid.json["amount_captured"].as_i64()
        ),
        (Some("succeeded"), Some(1_500))
    );
    assert_eq!(
        payment_events(&s, &a, &format!("payment={pid}")).await,
        [
            "payment.requires_action",
            "payment.succeeded",
            "subscription.payment_succeeded"
        ]
    );
    assert_eq!(
        payment_events(&s, &a, &format!("order={order}")).await,
        [
            "payment.requires_action",
            "payment.succeeded",
            "subscription.payment_succeeded",
            "order.paid"
        ]
    );
    // One order per invoice, however its events arrived: the checkout's and the renewal's.
    let orders = s.get("/v1/orders?limit=100", &a.server).await;
    let n = orders.json["data"].as_array().map(|d| {
        d.iter()
            .filter(|o| o["subscription"] == sid.as_str())
            .count()
    });
    assert_eq!(n, Some(2), "{}", orders.body);
}

async fn localstripe_answers_requires_action_and_the_page_loads_stripe_js(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let ls = LocalStripe::start().await;
    let s = stripe_server(&db, &ls.base, &[]).await;
    let a = stripe_app(&s).await;
    let card = test_card(&ls, "4000002500003155").await;
    let cid = customer_with(&s, &a, "ls-3ds", &card).await;
    let p = charge(&s, &a, &cid, 1_800).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    let url = next_action_url(&p.json);
    let pi = p.json["provider"]["payment_intent"]
        .as_str()
        .unwrap()
        .to_owned();
    // The intent's client secret, as Stripe.js needs it: on the page only.
    let secret = intent_secret(&ls, &pi).await;
    assert!(secret.contains("_secret_"), "{secret}");
    let (status, html, headers) = fetch(&s, &url).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("<script src=\"https://js.stripe.com/v3/\"></script>"));
    assert!(html.contains("<script src=\"/pay/authenticate.js\" defer></script>"));
    assert!(html.contains("content=\"pk_test_paybridge\""), "{html}");
    assert!(html.contains(&format!("content=\"{secret}\"")), "{html}");
    assert!(html.contains("content=\"requires_action\""), "{html}");
    assert!(html.contains("$18.00"), "{html}");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self' https://js.stripe.com https://*.js.stripe.com;"),
        "{csp}"
    );
    assert!(csp.contains(
        "frame-src https://js.stripe.com https://*.js.stripe.com https://hooks.stripe.com;"
    ));
    assert!(csp.contains("connect-src https://api.stripe.com;"));
    assert_eq!(headers["cache-control"], "no-store");
    // Only that page: every other page keeps `script-src 'self'`.
    let (_, _, admin) = fetch(&s, &s.url("/admin")).await;
    assert!(!admin["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("stripe.com"));
    let (status, js, _) = fetch(&s, &s.url("/pay/authenticate.js")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(js.contains("handleNextAction") && js.contains("confirmCardPayment"));
    // Never in an event, the database or a log line.
    let events = s.get("/v1/events?limit=100", &a.admin).await;
    assert!(!events.body.contains(&secret));
    assert!(!db.all_stored_text().await.contains(&secret));
    assert!(!s.logs().contains(&secret));
    // The customer authenticates at Stripe (Stripe.js, which localstripe cannot serve),
    // and Stripe's signed event moves the payment on.
    let pid = p.json["id"].as_str().unwrap();
    let body = json!({"id": "evt_3ds_done", "object": "event", "type": "payment_intent.succeeded", "created": 2, "livemode": false,
        "data": {"object": {"id": pi, "object": "payment_intent", "status": "succeeded", "amount": 1800, "amount_received": 1800,
            "currency": "usd", "metadata": {"pb_payment": pid}}}})
    .to_string();
    let r = signed(&s, &a, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    s.until(&format!("/v1/payments/{pid}"), &a.server, |p| {
        p["status"] == "succeeded"
    })
    .await;
}

/// The customer authenticates at the bank, but the webhook that says so never comes
/// (no endpoint at localstripe, no catch-up worker): the reconciler asks Stripe about
/// the payment left `requires_action` and moves it on, once.
async fn the_reconciler_moves_on_an_authenticated_payment_whose_webhook_was_lost(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let ls = LocalStripe::start().await;
    let s = stripe_server(
        &db,
        &ls.base,
        &[
            ("PAYBRIDGE_EVENT_SYNC_INTERVAL", "0"),
            ("PAYBRIDGE_RECONCILE_AFTER", "0"),
            ("PAYBRIDGE_RECONCILE_INTERVAL", "1"),
        ],
    )
    .await;
    let a = stripe_app(&s).await;
    let card = test_card(&ls, "4000002500003155").await;
    let cid = customer_with(&s, &a, "ls-3ds-lost", &card).await;
    let p = charge(&s, &a, &cid, 2_100).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    assert_eq!(p.json["status"], "requires_action", "{}", p.body);
    let pid = p.json["id"].as_str().unwrap().to_owned();
    let pi = p.json["provider"]["payment_intent"]
        .as_str()
        .unwrap()
        .to_owned();
    // While the customer has not authenticated, the reconciler's answer changes nothing.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let still = s.get(&format!("/v1/payments/{pid}"), &a.server).await;
    assert_eq!(still.json["status"], "requires_action", "{}", still.body);
    // The customer authenticates at the bank (what Stripe.js does on our page).
    let secret = intent_secret(&ls, &pi).await;
    localstripe(
        &ls,
        &format!("/v1/payment_intents/{pi}/_authenticate"),
        &[("client_secret", &secret), ("success", "true")],
    )
    .await;
    let done = s
        .until(&format!("/v1/payments/{pid}"), &a.server, |p| {
            p["status"] == "succeeded"
        })
        .await;
    assert_eq!(done["amount_captured"], 2_100, "{done}");
    assert!(done["next_action"].is_null(), "{done}");
    // Told once, as if the webhook had come.
    let events = s
        .get(
            &format!("/v1/events?payment={pid}&type=payment.succeeded"),
            &a.server,
        )
        .await;
    assert_eq!(
        events.json["data"].as_array().unwrap().len(),
        1,
        "{}",
        events.body
    );
}

/// The intent's client secret at localstripe, as Stripe.js is given it.
async fn intent_secret(ls: &LocalStripe, pi: &str) -> String {
    let intent = reqwest::Client::new()
        .get(format!("{}/v1/payment_intents/{pi}", ls.base))
        .bearer_auth("sk_test_paybridge_localstripe")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    intent["client_secret"].as_str().unwrap().to_owned()
}

async fn signed(s: &Server, a: &AppKeys, body: &str) -> Resp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Resp::from(
        s.http
            .post(s.url(&format!("/v1/webhooks/stripe/{}", a.id)))
            .header(
                "stripe-signature",
                signature::sign(body.as_bytes(), SIGNING.as_bytes(), now),
            )
            .body(body.to_owned())
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Stripe's intent for an off-session charge the bank wants authenticated, from its
/// published object: `requires_payment_method`, failed with `authentication_required`.
fn refused_intent(payment: &str) -> Value {
    fixture(
        "payment_intent",
        json!({"id": "pi_3ds_off", "amount": 4_200, "currency": "usd", "status": "requires_payment_method",
            "customer": "cus_3ds", "payment_method": null, "next_action": null, "latest_charge": null,
            "metadata": {"pb_payment": payment},
            "client_secret": "pi_3ds_off_secret_do_not_store_me",
            "last_payment_error": {"type": "card_error", "code": "authentication_required", "decline_code": "authentication_required",
                "message": "Your card was declined. This transaction requires authentication.",
                "payment_method": {"id": "pm_3ds_saved", "object": "payment_method", "type": "card"}}}),
    )
}

async fn stripes_authentication_required_and_its_events(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let stub = Stub::start(|req, _| {
        let path = req.path.as_str();
        if path == "/v1/customers" || path.starts_with("/v1/customers/") {
            return (200, fixture("customer", json!({"id": "cus_3ds"})));
        }
        if path.starts_with("/v1/payment_methods/") {
            return (
                200,
                fixture(
                    "payment_method",
                    json!({"id": "pm_3ds_saved", "customer": "cus_3ds",
                        "card": {"brand": "visa", "last4": "3155", "exp_month": 12, "exp_year": 2034}}),
                ),
            );
        }
        if path == "/v1/payment_intents" && req.method == "POST" {
            let payment = req.form_get("metadata[pb_payment]").unwrap_or("").to_owned();
            let mut e = stripe_error(
                "card_error",
                "authentication_required",
                "Your card was declined. This transaction requires authentication.",
            );
            e["error"]["decline_code"] = json!("authentication_required");
            e["error"]["payment_intent"] = refused_intent(&payment);
            return (402, e);
        }
        if path == "/v1/payment_intents/pi_3ds_off" {
            return (200, refused_intent("payment_?"));
        }
        (
            404,
            stripe_error("invalid_request_error", "resource_missing", "none"),
        )
    })
    .await;
    let s = stripe_server(&db, &stub.base, &[]).await;
    let a = stripe_app(&s).await;
    let cid = customer_with(&s, &a, "stub-3ds", "pm_3ds_saved").await;
    // Stripe's 402 `authentication_required` is not a decline: the payment waits.
    let p = charge(&s, &a, &cid, 4_200).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    let url = next_action_url(&p.json);
    let pid = p.json["id"].as_str().unwrap().to_owned();
    let made = stub.calls("POST", "/v1/payment_intents");
    assert_eq!(made[0].form_get("off_session"), Some("true"));
    assert_eq!(made[0].form_get("confirm"), Some("true"));
    // The page confirms the intent again with its card, through Stripe.js.
    let (status, html, _) = fetch(&s, &url).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("content=\"requires_payment_method\""),
        "{html}"
    );
    assert!(html.contains("content=\"pm_3ds_saved\""), "{html}");
    assert!(html.contains("content=\"pi_3ds_off_secret_do_not_store_me\""));
    assert!(!db
        .all_stored_text()
        .await
        .contains("pi_3ds_off_secret_do_not_store_me"));
    // Stripe's events, from its published objects: a repeat of `requires_action` keeps
    // it waiting, then the failed authentication fails it, once.
    let waiting = fixture(
        "payment_intent",
        json!({"id": "pi_3ds_off", "amount": 4_200, "currency": "usd", "status": "requires_action",
            "next_action": {"type": "use_stripe_sdk", "use_stripe_sdk": {}}, "last_payment_error": null,
            "latest_charge": null, "metadata": {"pb_payment": pid}}),
    );
    let ev = fixture(
        "event",
        json!({"id": "evt_3ds_1", "type": "payment_intent.requires_action", "created": 10, "data": {"object": waiting}}),
    );
    let r = signed(&s, &a, &ev.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut failed = waiting.clone();
    failed["status"] = json!("requires_payment_method");
    failed["next_action"] = Value::Null;
    failed["last_payment_error"] = json!({"type": "invalid_request_error", "code": "payment_intent_authentication_failure",
        "message": "The provided PaymentMethod has failed authentication."});
    let ev = fixture(
        "event",
        json!({"id": "evt_3ds_2", "type": "payment_intent.payment_failed", "created": 11, "data": {"object": failed}}),
    );
    let r = signed(&s, &a, &ev.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let p = s
        .until(&format!("/v1/payments/{pid}"), &a.server, |p| {
            p["status"] == "failed"
        })
        .await;
    assert_eq!(
        p["failure"]["code"],
        "payment_intent_authentication_failure"
    );
    // A late `requires_action` never moves it back.
    let ev = fixture(
        "event",
        json!({"id": "evt_3ds_3", "type": "payment_intent.requires_action", "created": 9, "data": {"object": waiting}}),
    );
    signed(&s, &a, &ev.to_string()).await;
    assert_eq!(
        s.get(&format!("/v1/payments/{pid}"), &a.server).await.json["status"],
        "failed"
    );
    assert_eq!(
        payment_events(&s, &a, &format!("payment={pid}")).await,
        ["payment.requires_action", "payment.failed"]
    );
}

/// The sandbox's authentication page in Chromium at 1280 and 390 px: "Complete" pays,
/// "Fail" fails with the provider's reason; each checked again through the API. First,
/// the dashboard's payment page shows the link to send while the charge waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_authentication_page_in_a_browser() {
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let cid = customer_with(&s, &a, "3ds-browser", "4000002760003184").await;
    for width in ["1280", "390"] {
        let ok = charge(&s, &a, &cid, 2_500).await;
        let ko = charge(&s, &a, &cid, 1_200).await;
        let (ok_url, ko_url) = (next_action_url(&ok.json), next_action_url(&ko.json));
        let out = crate::browser::scenario(
            &s,
            &a,
            "authenticate-sandbox",
            &[
                ("WIDTH", width),
                ("COMPLETE_URL", &ok_url),
                ("FAIL_URL", &ko_url),
                ("PAYMENT_JSON", &ok.json.to_string()),
            ],
        );
        // The dashboard showed the page's link while the charge waited.
        assert_eq!(out["dashboard_link"], ok_url.as_str(), "{out}");
        assert_eq!(out["dashboard_copy"], true, "{out}");
        assert!(
            out["dashboard_says"]
                .as_str()
                .unwrap()
                .contains("authenticate this charge"),
            "{out}"
        );
        // The SDK's helpers found the page and opened it (by now it says it is paid).
        assert_eq!(out["sdk_next_action"]["url"], ok_url.as_str(), "{out}");
        assert_eq!(out["sdk_next_action"]["type"], "authenticate", "{out}");
        assert_eq!(out["sdk_opened"], ok_url.as_str(), "{out}");
        assert!(
            out["sdk_page"].as_str().unwrap().contains("$25.00"),
            "{out}"
        );
        assert_eq!(out["complete_amount"], "$25.00", "{out}");
        assert_eq!(out["fail_amount"], "$12.00", "{out}");
        assert_eq!(out["complete_card"], "Card: Visa •••• 3184", "{out}");
        assert!(
            out["complete"]
                .as_str()
                .unwrap()
                .starts_with("Authentication complete"),
            "{out}"
        );
        assert!(
            out["fail"]
                .as_str()
                .unwrap()
                .starts_with("Authentication failed"),
            "{out}"
        );
        let (ok_id, ko_id) = (
            ok.json["id"].as_str().unwrap(),
            ko.json["id"].as_str().unwrap(),
        );
        s.until(&format!("/v1/payments/{ok_id}"), &a.server, |p| {
            p["status"] == "succeeded"
        })
        .await;
        let failed = s
            .until(&format!("/v1/payments/{ko_id}"), &a.server, |p| {
                p["status"] == "failed"
            })
            .await;
        assert_eq!(
            failed["failure"]["code"],
            "payment_intent_authentication_failure"
        );
        assert_eq!(
            payment_events(&s, &a, &format!("payment={ok_id}")).await,
            ["payment.requires_action", "payment.succeeded"]
        );
        assert_eq!(
            payment_events(&s, &a, &format!("payment={ko_id}")).await,
            ["payment.requires_action", "payment.failed"]
        );
    }
}

/// A renewal at Stripe whose bank asks for 3-D Secure: subscribed against localstripe,
/// then Stripe's `invoice.payment_action_required` and `invoice.paid` (localstripe sends
/// neither) built from Stripe's published invoice, about an intent localstripe holds in
/// `requires_action`.
async fn a_stripe_renewal_that_needs_authentication(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let ls = LocalStripe::start().await;
    let s = stripe_server(&db, &ls.base, &[]).await;
    let a = stripe_app(&s).await;
    let product = localstripe(&ls, "/v1/products", &[("name", "Pro"), ("type", "service")]).await;
    localstripe(
        &ls,
        "/v1/plans",
        &[
            ("id", "pro-3ds"),
            ("amount", "2000"),
            ("currency", "usd"),
            ("interval", "month"),
            ("product", product["id"].as_str().unwrap()),
        ],
    )
    .await;
    let pro = s
        .post(
            "/v1/products",
            &a.admin,
            json!({"name": "Pro", "unit_amount": 2_000, "currency": "usd", "recurring": {"interval": "month"}, "provider_price_id": "pro-3ds"}),
        )
        .await;
    let cid = customer_with(&s, &a, "ls-3ds-sub", "pm_card_visa").await;
    let sub = s
        .post(
            "/v1/subscriptions",
            &a.server,
            json!({"customer": cid, "product": pro.json["id"]}),
        )
        .await;
    assert_eq!(sub.status, StatusCode::CREATED, "{}", sub.body);
    let sid = sub.json["id"].as_str().unwrap().to_owned();
    let provider_sub = sub.json["provider_subscription_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The renewal's intent, waiting for the customer at "Stripe".
    let card = test_card(&ls, "4000002500003155").await;
    let pi = localstripe(
        &ls,
        "/v1/payment_intents",
        &[
            ("amount", "2000"),
            ("currency", "usd"),
            ("payment_method_types[]", "card"),
        ],
    )
    .await;
    let pi_id = pi["id"].as_str().unwrap().to_owned();
    localstripe(
        &ls,
        &format!("/v1/payment_intents/{pi_id}"),
        &[("payment_method", &card)],
    )
    .await;
    let confirmed = localstripe(&ls, &format!("/v1/payment_intents/{pi_id}/confirm"), &[]).await;
    assert_eq!(confirmed["status"], "requires_action", "{confirmed}");
    let secret = confirmed["client_secret"].as_str().unwrap().to_owned();
    let invoice = |paid: bool| {
        fixture(
            "invoice",
            json!({"id": "in_3ds_renewal", "subscription": provider_sub, "customer": null,
                "billing_reason": "subscription_cycle", "currency": "usd", "amount_due": 2000,
                "amount_paid": if paid { 2000 } else { 0 }, "status": if paid { "paid" } else { "open" },
                "payment_intent": pi_id, "charge": null,
                "subscription_details": {"metadata": {"pb_subscription": sid}}}),
        )
    };
    let ev = fixture(
        "event",
        json!({"id": "evt_in_action", "type": "invoice.payment_action_required", "created": 20,
            "data": {"object": invoice(false)}}),
    );
    let r = signed(&s, &a, &ev.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let waiting = s
        .until("/v1/payments?status=requires_action", &a.server, |l| {
            l["data"].as_array().is_some_and(|d| d.len() == 1)
        })
        .await;
    let p = &waiting["data"][0];
    assert_eq!(p["method"], "subscription");
    let url = next_action_url(p);
    let pid = p["id"].as_str().unwrap().to_owned();
    let order = p["order"].as_str().unwrap().to_owned();
    // The page asks Stripe for the invoice's intent and hands Stripe.js its secret.
    let (status, html, _) = fetch(&s, &url).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains(&format!("content=\"{secret}\"")), "{html}");
    assert!(html.contains("content=\"requires_action\""), "{html}");
    assert!(html.contains("$20.00"), "{html}");
    assert!(!db.all_stored_text().await.contains(&secret));
    // Authenticated: Stripe pays the invoice.
    let ev = fixture(
        "event",
        json!({"id": "evt_in_paid", "type": "invoice.paid", "created": 21, "data": {"object": invoice(true)}}),
    );
    let r = signed(&s, &a, &ev.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    s.until(&format!("/v1/orders/{order}"), &a.server, |o| {
        o["status"] == "paid"
    })
    .await;
    assert_eq!(
        payment_events(&s, &a, &format!("payment={pid}")).await,
        [
            "payment.requires_action",
            "payment.succeeded",
            "subscription.payment_succeeded"
        ]
    );
    let (_, html, _) = fetch(&s, &url).await;
    assert!(html.contains("This payment is complete"), "{html}");
}
