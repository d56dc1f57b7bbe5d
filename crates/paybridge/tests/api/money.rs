//! Money integrity (issue 14): an order is never paid twice, and the ledger never books
//! a fact that cannot be true — whatever the order of clicks, and whatever a signed
//! event claims.

use paybridge_core::stripe::signature;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{AppKeys, Backend, Server, TestDb};
use crate::stub::{fixture, stripe_error, Recorded, Stub};

paybridge_testkit::on_both!(
    a_second_checkout_while_the_first_is_paid_is_refused,
    racing_checkouts_pay_an_order_once,
    a_checkout_that_cannot_be_expired_holds_the_order,
    intents_hold_the_order_and_a_new_way_to_pay_supersedes,
    an_intent_that_cannot_be_cancelled_holds_the_order,
    money_that_arrives_twice_is_refunded,
    refund_facts_that_cannot_be_true_are_rejected,
    a_capture_beyond_the_amount_is_rejected,
    connected_account_events_move_no_platform_payment,
    a_lost_dispute_gives_the_money_back,
    a_refund_answered_for_another_amount_is_settled,
);

const SIGNING: &str = "whsec_money_integrity_tests_0000";
const URLS: (&str, &str) = ("https://shop.example/ok", "https://shop.example/cart");

async fn order(s: &Server, a: &AppKeys, amount: i64) -> String {
    let o = s
        .post(
            "/v1/orders",
            &a.server,
            json!({"line_items": [{"name": "Thing", "unit_amount": amount}], "currency": "usd"}),
        )
        .await;
    assert_eq!(o.status, StatusCode::CREATED, "{}", o.body);
    o.json["id"].as_str().unwrap().to_owned()
}

async fn checkout_for(s: &Server, a: &AppKeys, oid: &str) -> crate::common::Resp {
    s.post(
        "/v1/checkout/sessions",
        &a.server,
        json!({"order": oid, "success_url": URLS.0, "cancel_url": URLS.1}),
    )
    .await
}

async fn complete(s: &Server, a: &AppKeys, cs: &Value) -> crate::common::Resp {
    s.complete_checkout(&a.publishable, cs, "4242424242424242")
        .await
}

async fn get_order(s: &Server, a: &AppKeys, oid: &str) -> Value {
    s.get(&format!("/v1/orders/{oid}"), &a.server).await.json
}

/// Item 1: while checkout A is being paid (its webhook not here yet), checkout B for the
/// same order is refused, and A's outcome is fetched and applied at once.
async fn a_second_checkout_while_the_first_is_paid_is_refused(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start_with(&db, &[("PAYBRIDGE_SANDBOX_WEBHOOK_DELAY_MS", "3000")]).await;
    let a = s.sandbox_app().await;
    let oid = order(&s, &a, 1000).await;
    let first = checkout_for(&s, &a, &oid).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(complete(&s, &a, &first.json).await.status, StatusCode::OK);
    let second = checkout_for(&s, &a, &oid).await;
    assert_eq!(second.status, StatusCode::CONFLICT, "{}", second.body);
    assert_eq!(
        second.error().1,
        "order_already_paid",
        "A's outcome was fetched: the order is paid"
    );
    // Before its webhook (3 s away): A's outcome was fetched when B was refused.
    let o = get_order(&s, &a, &oid).await;
    assert_eq!(
        (o["status"].as_str(), o["amount_paid"].as_i64()),
        (Some("paid"), Some(1000)),
        "{o}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let o = get_order(&s, &a, &oid).await;
    assert_eq!(o["amount_paid"], 1000);
    assert_eq!(o["payments"].as_array().unwrap().len(), 1, "{o}");
}

/// Item 1 under concurrency: completing A and opening B at the same moment, three
/// times; whichever wins, the order is paid once.
async fn racing_checkouts_pay_an_order_once(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start_with(&db, &[("PAYBRIDGE_SANDBOX_WEBHOOK_DELAY_MS", "300")]).await;
    let a = s.sandbox_app().await;
    for round in 0..3 {
        let oid = order(&s, &a, 1000).await;
        let first = checkout_for(&s, &a, &oid).await;
        let (paid_a, second) =
            tokio::join!(complete(&s, &a, &first.json), checkout_for(&s, &a, &oid));
        if second.status == StatusCode::CREATED {
            let r = complete(&s, &a, &second.json).await;
            assert!(
                r.status == StatusCode::OK && paid_a.status != StatusCode::OK,
                "round {round}: B admitted, so A must have been expired first: {} / {}",
                paid_a.body,
                r.body
            );
        } else {
            assert!(
                ["order_payment_in_progress", "order_already_paid"]
                    .contains(&second.error().1.as_str()),
                "{}",
                second.body
            );
        }
        s.until(&format!("/v1/orders/{oid}"), &a.server, |o| {
            o["status"] == "paid"
        })
        .await;
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        let o = get_order(&s, &a, &oid).await;
        assert_eq!(o["amount_paid"], 1000, "round {round}: {o}");
    }
}

fn session_answer(req: &Recorded, id: &str) -> Value {
    let total: i64 = req
        .form_get("line_items[0][price_data][unit_amount]")
        .map(|u| u.parse().unwrap())
        .unwrap_or(1000);
    fixture(
        "checkout.session",
        json!({"id": id, "url": format!("https://checkout.stripe.com/c/pay/{id}"), "status": "open", "payment_status": "unpaid",
               "amount_total": total, "currency": "usd", "payment_intent": null, "customer": null, "mode": "payment",
               "metadata": {"pb_payment": req.form_get("metadata[pb_payment]"), "pb_checkout": req.form_get("metadata[pb_checkout]")}}),
    )
}

fn intent_answer(req: &Recorded, status: &str) -> Value {
    let amount: i64 = req.form_get("amount").unwrap().parse().unwrap();
    fixture(
        "payment_intent",
        json!({"id": format!("pi_{}", req.form_get("metadata[pb_payment]").unwrap()), "amount": amount, "currency": "usd",
               "status": status, "amount_received": if status == "succeeded" { amount } else { 0 }, "amount_capturable": 0,
               "last_payment_error": null, "canceled_at": null, "latest_charge": null, "transfer_data": null,
               "client_secret": "pi_secret_stub", "metadata": {"pb_payment": req.form_get("metadata[pb_payment]")}}),
    )
}

async fn stripe_server(db: &TestDb, stub: &Stub, extra: &[(&str, &str)]) -> (Server, AppKeys) {
    let mut env = vec![
        ("PAYBRIDGE_STRIPE_API_BASE", stub.base.as_str()),
        ("PAYBRIDGE_STRIPE_RETRY_BASE_MS", "20"),
    ];
    env.extend_from_slice(extra);
    let s = Server::start_with(db, &env).await;
    let a = s.app("test").await;
    let r = s
        .put("/v1/payment_config", &a.admin, json!({"provider": "stripe", "provider_public_key": "pk_test_x", "provider_secret_key": "sk_test_x"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    s.put(
        "/v1/payment_config/signing_secret",
        &a.admin,
        json!({"signing_secret": SIGNING}),
    )
    .await;
    (s, a)
}

/// Sends a signed event; returns the provider event's stored outcome.
async fn send(
    s: &Server,
    a: &AppKeys,
    id: &str,
    kind: &str,
    object: Value,
    account: Option<&str>,
) -> String {
    let mut body = json!({"id": id, "object": "event", "type": kind, "created": 1, "livemode": false, "data": {"object": object}});
    if let Some(acct) = account {
        body["account"] = json!(acct);
    }
    let body = body.to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let r = s
        .http
        .post(s.url(&format!("/v1/webhooks/stripe/{}", a.id)))
        .header(
            "stripe-signature",
            signature::sign(body.as_bytes(), SIGNING.as_bytes(), now),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    s.get(&format!("/v1/provider_events/{id}"), &a.admin)
        .await
        .json["outcome"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Item 1: expiring the superseded checkout fails (not because it is complete): the new
/// one does not go ahead, so the two are never payable together.
async fn a_checkout_that_cannot_be_expired_holds_the_order(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let stub = Stub::start(|req, n| match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/v1/checkout/sessions") => (200, session_answer(req, &format!("cs_test_{n}"))),
        ("POST", p) if p.ends_with("/expire") => (
            400,
            stripe_error(
                "invalid_request_error",
                "resource_missing",
                "cannot expire now",
            ),
        ),
        _ => (
            404,
            stripe_error("invalid_request_error", "resource_missing", "none"),
        ),
    })
    .await;
    let (s, a) = stripe_server(&db, &stub, &[]).await;
    let oid = order(&s, &a, 1000).await;
    let first = checkout_for(&s, &a, &oid).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let second = checkout_for(&s, &a, &oid).await;
    assert!(second.status.is_client_error() || second.status.is_server_error());
    assert_ne!(
        second.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        second.body
    );
    assert_eq!(
        stub.calls("POST", "/v1/checkout/sessions").len(),
        1,
        "no second page"
    );
    assert_eq!(
        stub.calls("POST", "/v1/checkout/sessions/cs_test_0/expire")
            .len(),
        1
    );
    let o = get_order(&s, &a, &oid).await;
    assert_eq!(o["payments"].as_array().unwrap().len(), 1, "{o}");
}

/// Item 2: an intent holds the order; a new way to pay cancels it at the provider first.
async fn intents_hold_the_order_and_a_new_way_to_pay_supersedes(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let oid = order(&s, &a, 1000).await;
    let intent = || {
        s.post(
            "/v1/payments",
            &a.server,
            json!({"order": oid, "method": "payment_intent"}),
        )
    };
    let p1 = intent().await;
    assert_eq!(p1.status, StatusCode::CREATED, "{}", p1.body);
    let p2 = intent().await;
    assert_eq!(p2.status, StatusCode::CREATED, "{}", p2.body);
    let (id1, id2) = (
        p1.json["id"].as_str().unwrap(),
        p2.json["id"].as_str().unwrap(),
    );
    assert_eq!(
        s.get(&format!("/v1/payments/{id1}"), &a.server).await.json["status"],
        "canceled",
        "the first intent was cancelled at the provider"
    );
    let confirm = |id: &str| {
        let path = format!("/v1/sandbox/payments/{id}/confirm");
        let (s, key) = (&s, a.publishable.clone());
        async move {
            s.post(&path, &key, json!({"card_number": "4242424242424242"}))
                .await
        }
    };
    assert_eq!(confirm(id1).await.status, StatusCode::CONFLICT);
    assert_eq!(confirm(id2).await.status, StatusCode::OK);
    s.until(&format!("/v1/orders/{oid}"), &a.server, |o| {
        o["status"] == "paid"
    })
    .await;
    assert_eq!(get_order(&s, &a, &oid).await["amount_paid"], 1000);
    // An open page and then an intent: the intent supersedes the page.
    let oid = order(&s, &a, 1000).await;
    let page = checkout_for(&s, &a, &oid).await;
    assert_eq!(page.status, StatusCode::CREATED);
    let p3 = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"order": oid, "method": "payment_intent"}),
        )
        .await;
    assert_eq!(p3.status, StatusCode::CREATED, "{}", p3.body);
    let paid_page = complete(&s, &a, &page.json).await;
    assert_ne!(
        paid_page.status,
        StatusCode::OK,
        "the page was expired first"
    );
    let pay = page.json["payment"].as_str().unwrap();
    assert_eq!(
        s.get(&format!("/v1/payments/{pay}"), &a.server).await.json["status"],
        "expired"
    );
    // A split payment that fits supersedes nothing.
    let oid = order(&s, &a, 1000).await;
    let half = |amount: i64| {
        s.post(
            "/v1/payments",
            &a.server,
            json!({"order": oid, "method": "payment_intent", "amount": amount}),
        )
    };
    let h1 = half(500).await;
    let h2 = half(500).await;
    assert_eq!(
        (h1.status, h2.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    let h1 = h1.json["id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.get(&format!("/v1/payments/{h1}"), &a.server).await.json["status"],
        "pending",
        "{h1} still payable"
    );
}

/// Item 2: two intents both confirmed before one could be cancelled — the surplus is
/// refunded automatically, and the order says so.
async fn money_that_arrives_twice_is_refunded(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let stub = Stub::start(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/v1/payment_intents") => (200, intent_answer(req, "requires_payment_method")),
        ("POST", p) if p.ends_with("/cancel") => {
            let id = p.split('/').nth(3).unwrap();
            (200, fixture("payment_intent", json!({"id": id, "amount": 1000, "currency": "usd", "status": "canceled",
                "amount_received": 0, "amount_capturable": 0, "last_payment_error": null, "latest_charge": null, "transfer_data": null, "metadata": {}})))
        }
        ("POST", "/v1/refunds") => (200, fixture("refund", json!({"id": format!("re_{}", req.form_get("metadata[pb_refund]").unwrap()),
            "amount": req.form_get("amount").unwrap().parse::<i64>().unwrap(), "currency": "usd", "status": "succeeded",
            "payment_intent": req.form_get("payment_intent"), "failure_reason": null,
            "metadata": {"pb_refund": req.form_get("metadata[pb_refund]")}}))),
        _ => (404, stripe_error("invalid_request_error", "resource_missing", "none")),
    })
    .await;
    let (s, a) = stripe_server(&db, &stub, &[("PAYBRIDGE_RECONCILE_INTERVAL", "1")]).await;
    let oid = order(&s, &a, 1000).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let p = s
            .post(
                "/v1/payments",
                &a.server,
                json!({"order": oid, "method": "payment_intent"}),
            )
            .await;
        assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
        ids.push(p.json["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        stub.calls("POST", &format!("/v1/payment_intents/pi_{}/cancel", ids[0]))
            .len(),
        1
    );
    // The customer had confirmed the first before the cancel reached it: both succeed.
    for (i, id) in ids.iter().enumerate() {
        let pi = fixture(
            "payment_intent",
            json!({"id": format!("pi_{id}"), "amount": 1000, "currency": "usd", "status": "succeeded",
            "amount_received": 1000, "amount_capturable": 0, "last_payment_error": null, "latest_charge": null, "transfer_data": null,
            "metadata": {"pb_payment": id}}),
        );
        assert_eq!(
            send(
                &s,
                &a,
                &format!("evt_twice_{i}"),
                "payment_intent.succeeded",
                pi,
                None
            )
            .await,
            "processed"
        );
    }
    let o = s
        .until(&format!("/v1/orders/{oid}"), &a.server, |o| {
            o["amount_refunded"] == 1000
        })
        .await;
    assert_eq!(
        (o["status"].as_str(), o["amount_paid"].as_i64()),
        (Some("paid"), Some(2000)),
        "{o}"
    );
    let calls = stub.calls("POST", "/v1/refunds");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].form_get("amount"), Some("1000"));
    assert_eq!(calls[0].form_get("reason"), Some("duplicate"));
    let refunds = o["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0]["status"], "succeeded");
    assert_eq!(
        s.event_types(&a.admin, &format!("order={oid}&type=order.overpaid"))
            .await
            .len(),
        1
    );
}

async fn card_stub() -> Stub {
    Stub::start(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("POST", p) if p.starts_with("/v1/customers") => (200, fixture("customer", json!({"id": "cus_stub"}))),
        ("POST", p) if p.ends_with("/attach") => (200, fixture("payment_method", json!({"id": "pm_stub", "customer": "cus_stub"}))),
        ("POST", "/v1/payment_intents") => {
            let status = if req.form_get("confirm") == Some("true") { "succeeded" } else { "requires_payment_method" };
            (200, intent_answer(req, status))
        }
        ("POST", "/v1/refunds") => {
            // Answers a refund of 600 as one of 500.
            let asked: i64 = req.form_get("amount").unwrap().parse().unwrap();
            let amount = if asked == 600 { 500 } else { asked };
            (200, fixture("refund", json!({"id": format!("re_{}", req.form_get("metadata[pb_refund]").unwrap()),
                "amount": amount, "currency": "usd", "status": "succeeded", "payment_intent": req.form_get("payment_intent"),
                "failure_reason": null, "metadata": {"pb_refund": req.form_get("metadata[pb_refund]")}})))
        }
        _ => (404, stripe_error("invalid_request_error", "resource_missing", "none")),
    })
    .await
}

async fn paid_by_card(s: &Server, a: &AppKeys, amount: i64) -> String {
    let c = s
        .post(
            "/v1/customers",
            &a.server,
            json!({"external_id": format!("m-{}", paybridge_testkit::random_suffix())}),
        )
        .await;
    let cid = c.json["id"].as_str().unwrap().to_owned();
    let att = s
        .post(
            &format!("/v1/customers/{cid}/payment_methods"),
            &a.server,
            json!({"payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(att.status, StatusCode::CREATED, "{}", att.body);
    let p = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": amount, "currency": "usd", "method": "card", "customer": cid}),
        )
        .await;
    assert_eq!(p.json["status"], "succeeded", "{}", p.body);
    p.json["id"].as_str().unwrap().to_owned()
}

fn refund_object(id: &str, pi: &str, amount: i64, currency: &str) -> Value {
    fixture(
        "refund",
        json!({"id": id, "amount": amount, "currency": currency, "status": "succeeded",
        "payment_intent": pi, "charge": null, "failure_reason": null, "metadata": {}}),
    )
}

async fn anomalies(s: &Server, a: &AppKeys, pid: &str) -> usize {
    s.event_types(&a.admin, &format!("payment={pid}&type=ledger.anomaly"))
        .await
        .len()
}

/// Item 3: refund facts that cannot be true are stored as rejected, told to the app,
/// and never booked.
async fn refund_facts_that_cannot_be_true_are_rejected(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let stub = card_stub().await;
    let (s, a) = stripe_server(&db, &stub, &[]).await;
    let pid = paid_by_card(&s, &a, 1000).await;
    let pi = format!("pi_{pid}");
    let path = format!("/v1/payments/{pid}");
    let payment = |_: &Server| s.get(&path, &a.server);
    for (i, (amount, currency)) in [(5000, "usd"), (400, "jpy")].into_iter().enumerate() {
        let outcome = send(
            &s,
            &a,
            &format!("evt_bad_refund_{i}"),
            "refund.updated",
            refund_object(&format!("re_bad_{i}"), &pi, amount, currency),
            None,
        )
        .await;
        assert_eq!(outcome, "rejected", "{amount} {currency}");
    }
    let p = payment(&s).await.json;
    assert_eq!(
        (p["status"].as_str(), p["amount_refunded"].as_i64()),
        (Some("succeeded"), Some(0)),
        "{p}"
    );
    assert_eq!(anomalies(&s, &a, &pid).await, 2);
    // A full refund, then a "negative refund" that would undo it.
    let r = s
        .post("/v1/refunds", &a.admin, json!({"payment": pid}))
        .await;
    assert_eq!(r.json["status"], "succeeded", "{}", r.body);
    let outcome = send(
        &s,
        &a,
        "evt_negative_refund",
        "refund.updated",
        refund_object("re_negative", &pi, -1000, "usd"),
        None,
    )
    .await;
    assert_eq!(outcome, "rejected");
    let p = payment(&s).await.json;
    assert_eq!(
        (p["status"].as_str(), p["amount_refunded"].as_i64()),
        (Some("refunded"), Some(1000)),
        "{p}"
    );
    let again = s
        .post(
            "/v1/refunds",
            &a.admin,
            json!({"payment": pid, "amount": 1000}),
        )
        .await;
    assert_eq!(again.error().1, "amount_too_large", "{}", again.body);
    assert_eq!(
        stub.calls("POST", "/v1/refunds").len(),
        1,
        "no second refund sent"
    );
    // A refund on a payment that never captured.
    let open = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 1000, "currency": "usd", "method": "payment_intent"}),
        )
        .await;
    let open_id = open.json["id"].as_str().unwrap().to_owned();
    let outcome = send(
        &s,
        &a,
        "evt_refund_uncaptured",
        "refund.updated",
        refund_object("re_uncaptured", &format!("pi_{open_id}"), 700, "usd"),
        None,
    )
    .await;
    assert_eq!(outcome, "rejected");
    let o = s
        .get(&format!("/v1/payments/{open_id}"), &a.server)
        .await
        .json;
    assert_eq!(o["amount_refunded"], 0);
    assert_eq!(anomalies(&s, &a, &open_id).await, 1);
    let m = s
        .http
        .get(s.url("/metrics"))
        .bearer_auth(&s.root)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("paybridge_ledger_anomalies_total 4"), "{m}");
    // The four events were stored but refused: counted as such, not as processed.
    assert!(
        m.contains("paybridge_webhook_events_total{outcome=\"anomaly\"} 4"),
        "{m}"
    );
}

/// Item 4: a capture beyond the payment's amount is rejected, and cannot be refunded.
async fn a_capture_beyond_the_amount_is_rejected(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let stub = card_stub().await;
    let (s, a) = stripe_server(&db, &stub, &[]).await;
    let p = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 1000, "currency": "usd", "method": "payment_intent"}),
        )
        .await;
    let pid = p.json["id"].as_str().unwrap().to_owned();
    let pi = fixture(
        "payment_intent",
        json!({"id": format!("pi_{pid}"), "amount": 1000, "currency": "usd", "status": "succeeded",
        "amount_received": 900000, "amount_capturable": 0, "last_payment_error": null, "latest_charge": null, "transfer_data": null,
        "metadata": {"pb_payment": pid}}),
    );
    assert_eq!(
        send(
            &s,
            &a,
            "evt_huge_capture",
            "payment_intent.succeeded",
            pi,
            None
        )
        .await,
        "rejected"
    );
    let after = s.get(&format!("/v1/payments/{pid}"), &a.server).await.json;
    assert_eq!(
        (after["status"].as_str(), after["amount_captured"].as_i64()),
        (Some("pending"), Some(0)),
        "{after}"
    );
    let r = s
        .post(
            "/v1/refunds",
            &a.admin,
            json!({"payment": pid, "amount": 500000}),
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.body);
    assert!(stub.calls("POST", "/v1/refunds").is_empty());
    assert_eq!(anomalies(&s, &a, &pid).await, 1);
    let o = get_order(&s, &a, after["order"].as_str().unwrap()).await;
    assert_eq!(o["amount_paid"], 0);
}

/// Suspected: a connected account's own intent carrying our metadata moves nothing.
async fn connected_account_events_move_no_platform_payment(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let stub = card_stub().await;
    let (s, a) = stripe_server(&db, &stub, &[]).await;
    let p = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 1000, "currency": "usd", "method": "payment_intent"}),
        )
        .await;
    let pid = p.json["id"].as_str().unwrap().to_owned();
    let pi = fixture(
        "payment_intent",
        json!({"id": format!("pi_{pid}"), "amount": 1000, "currency": "usd", "status": "succeeded",
        "amount_received": 1000, "amount_capturable": 0, "last_payment_error": null, "latest_charge": null, "transfer_data": null,
        "metadata": {"pb_payment": pid}}),
    );
    assert_eq!(
        send(
            &s,
            &a,
            "evt_connected",
            "payment_intent.succeeded",
            pi,
            Some("acct_1ConnectedXyz")
        )
        .await,
        "ignored"
    );
    let after = s.get(&format!("/v1/payments/{pid}"), &a.server).await.json;
    assert_eq!(after["status"], "pending", "{after}");
}

/// Suspected: a lost dispute re-totals the order, and no refund is tried on a disputed
/// charge.
async fn a_lost_dispute_gives_the_money_back(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let cid = s.customer_with_card(&a.server, "dispute-lost").await;
    let p = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 4_000, "currency": "usd", "method": "card", "customer": cid}),
        )
        .await;
    let pid = p.json["id"].as_str().unwrap().to_owned();
    let oid = p.json["order"].as_str().unwrap().to_owned();
    s.post(
        &format!("/v1/sandbox/payments/{pid}/dispute"),
        &a.server,
        json!({}),
    )
    .await;
    s.until(&format!("/v1/payments/{pid}"), &a.server, |p| {
        p["dispute"] == "open"
    })
    .await;
    let r = s
        .post(
            "/v1/refunds",
            &a.admin,
            json!({"payment": pid, "amount": 100}),
        )
        .await;
    assert_eq!(
        (r.status, r.error().1.as_str()),
        (StatusCode::CONFLICT, "payment_disputed"),
        "{}",
        r.body
    );
    s.post(
        &format!("/v1/sandbox/payments/{pid}/dispute"),
        &a.server,
        json!({"close": "lost"}),
    )
    .await;
    s.until(&format!("/v1/payments/{pid}"), &a.server, |p| {
        p["dispute"] == "lost"
    })
    .await;
    let o = s
        .until(&format!("/v1/orders/{oid}"), &a.server, |o| {
            o["status"] == "refunded"
        })
        .await;
    assert_eq!(o["amount_refunded"], 4_000);
    let r = s
        .post("/v1/refunds", &a.admin, json!({"payment": pid}))
        .await;
    assert_eq!(r.error().1, "payment_disputed", "{}", r.body);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM refunds").await, 0);
}

/// Suspected: a refund the provider answers for another amount does not stay pending
/// (holding its amount) for ever.
async fn a_refund_answered_for_another_amount_is_settled(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let stub = card_stub().await;
    let (s, a) = stripe_server(&db, &stub, &[]).await;
    let pid = paid_by_card(&s, &a, 1000).await;
    let r = s
        .post(
            "/v1/refunds",
            &a.admin,
            json!({"payment": pid, "amount": 600, "metadata": {"short": "yes"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        (r.json["status"].as_str(), r.json["amount"].as_i64()),
        (Some("succeeded"), Some(500)),
        "{}",
        r.body
    );
    let p = s.get(&format!("/v1/payments/{pid}"), &a.server).await.json;
    assert_eq!(p["amount_refunded"], 500);
    assert_eq!(
        db.scalar("SELECT amount_refunding FROM payments").await,
        500
    );
    assert_eq!(anomalies(&s, &a, &pid).await, 1, "a person is told");
}

/// Item 2: cancelling the open intent fails (not because it took money): the new way
/// to pay is refused, and the old one stays the order's only one.
async fn an_intent_that_cannot_be_cancelled_holds_the_order(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let stub = Stub::start(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/v1/payment_intents") => (200, intent_answer(req, "requires_payment_method")),
        ("POST", p) if p.ends_with("/cancel") => (
            400,
            stripe_error("invalid_request_error", "parameter_invalid", "not now"),
        ),
        _ => (
            404,
            stripe_error("invalid_request_error", "resource_missing", "none"),
        ),
    })
    .await;
    let (s, a) = stripe_server(&db, &stub, &[]).await;
    let oid = order(&s, &a, 1000).await;
    let intent = || {
        s.post(
            "/v1/payments",
            &a.server,
            json!({"order": oid, "method": "payment_intent"}),
        )
    };
    let p1 = intent().await;
    assert_eq!(p1.status, StatusCode::CREATED, "{}", p1.body);
    let p2 = intent().await;
    assert!(p2.status.is_server_error() || p2.status.is_client_error());
    assert_ne!(p2.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", p2.body);
    assert_eq!(
        stub.calls("POST", "/v1/payment_intents").len(),
        1,
        "no second intent"
    );
    let o = get_order(&s, &a, &oid).await;
    assert_eq!(o["payments"].as_array().unwrap().len(), 1, "{o}");
    let id1 = p1.json["id"].as_str().unwrap();
    assert_eq!(
        s.get(&format!("/v1/payments/{id1}"), &a.server).await.json["status"],
        "pending"
    );
}
