//! Refunds: partial, several, never past the capture — also under concurrency, where
//! the database itself decides — roles, idempotency, an event that beats the API's own
//! answer, and refunds against localstripe (which does not check limits itself).

use paybridge_core::stripe::signature;
use paybridge_testkit::LocalStripe;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{AppKeys, Backend, Resp, Server, TestDb};
use crate::stub::{fixture, stripe_error, Stub};

paybridge_testkit::on_both!(
    partial_several_and_too_large,
    only_admins_refund_unless_granted,
    concurrent_refunds_never_pass_the_capture,
    one_idempotency_key_makes_one_refund_and_one_provider_call,
    a_refund_event_before_the_answer_is_applied_once,
    refunds_against_localstripe,
);

/// A succeeded sandbox payment of `amount` USD, paid with a saved card.
pub(crate) async fn paid(s: &Server, a: &AppKeys, amount: i64) -> Value {
    let cid = s
        .customer_with_card(
            &a.server,
            &format!("u-{amount}-{}", paybridge_testkit::random_suffix()),
        )
        .await;
    let p = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": amount, "currency": "usd", "method": "card", "customer": cid}),
        )
        .await;
    assert_eq!(p.json["status"], "succeeded", "{}", p.body);
    p.json
}

async fn partial_several_and_too_large(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let p = paid(&s, &a, 10_000).await;
    let pid = p["id"].as_str().unwrap();
    let r1 = s.post("/v1/refunds", &a.admin, json!({"payment": pid, "amount": 3_000, "reason": "requested_by_customer", "metadata": {"ticket": "42"}})).await;
    assert_eq!(r1.status, StatusCode::CREATED, "{}", r1.body);
    assert_eq!(
        (r1.json["status"].as_str(), r1.json["amount"].as_i64()),
        (Some("succeeded"), Some(3_000))
    );
    assert_eq!(r1.json["reason"], "requested_by_customer");
    assert!(r1.json["provider_refund_id"]
        .as_str()
        .unwrap()
        .starts_with("re_"));
    let after = s.get(&format!("/v1/payments/{pid}"), &a.server).await.json;
    assert_eq!(
        (after["status"].as_str(), after["amount_refunded"].as_i64()),
        (Some("partially_refunded"), Some(3_000))
    );
    let too_much = s
        .post(
            "/v1/refunds",
            &a.admin,
            json!({"payment": pid, "amount": 7_001}),
        )
        .await;
    assert_eq!(too_much.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(too_much.error().1, "amount_too_large");
    // Amounts no payment could hold, or none at all: the caller's 422, naming the
    // parameter (i64::MAX used to overflow PostgreSQL's sum into a 500).
    for (amount, code) in [
        (i64::MAX, "amount_too_large"),
        (0, "invalid_amount"),
        (-1, "invalid_amount"),
    ] {
        let r = s
            .post(
                "/v1/refunds",
                &a.admin,
                json!({"payment": pid, "amount": amount}),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{amount}: {}",
            r.body
        );
        assert_eq!(
            (r.error().1.as_str(), r.error().2.as_deref()),
            (code, Some("amount")),
            "{amount}: {}",
            r.body
        );
    }
    let r2 = s
        .post("/v1/refunds", &a.admin, json!({"payment": pid}))
        .await;
    assert_eq!(r2.json["amount"], 7_000, "the default is what is left");
    let after = s.get(&format!("/v1/payments/{pid}"), &a.server).await.json;
    assert_eq!(
        (after["status"].as_str(), after["amount_refunded"].as_i64()),
        (Some("refunded"), Some(10_000))
    );
    let again = s
        .post(
            "/v1/refunds",
            &a.admin,
            json!({"payment": pid, "amount": 1}),
        )
        .await;
    assert_eq!(again.error().1, "amount_too_large");
    // The order follows, and lists the refunds.
    let order = s
        .get(
            &format!("/v1/orders/{}", p["order"].as_str().unwrap()),
            &a.server,
        )
        .await
        .json;
    assert_eq!(
        (order["status"].as_str(), order["amount_refunded"].as_i64()),
        (Some("refunded"), Some(10_000))
    );
    assert_eq!(order["refunds"].as_array().unwrap().len(), 2);
    let list = s
        .get(&format!("/v1/refunds?payment={pid}"), &a.server)
        .await;
    assert_eq!(list.json["data"].as_array().unwrap().len(), 2);
    let kinds = s.event_types(&a.admin, &format!("payment={pid}")).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "refund.succeeded").count(),
        2,
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"payment.partially_refunded".to_string())
            && kinds.contains(&"payment.refunded".to_string())
    );
    // Bad input changes nothing.
    for (body, param) in [
        (
            json!({"payment": pid, "amount": 1, "reason": "because"}),
            "reason",
        ),
        (
            json!({"payment": pid, "amount": 1, "refund_application_fee": true}),
            "refund_application_fee",
        ),
        (
            json!({"payment": pid, "amount": 1, "reverse_transfer": true}),
            "reverse_transfer",
        ),
        (json!({"payment": "payment_nope"}), ""),
    ] {
        let r = s.post("/v1/refunds", &a.admin, body.clone()).await;
        assert!(r.status.is_client_error(), "{body}");
        if !param.is_empty() {
            assert_eq!(r.error().2.as_deref(), Some(param));
        }
    }
    // Webhooks from the sandbox (charge.refunded, refund.created) arrive later and change nothing.
    s.until("/v1/provider_events?type=refund.created", &a.admin, |l| {
        l["data"].as_array().is_some_and(|d| d.len() == 2)
    })
    .await;
    let after = s.get(&format!("/v1/payments/{pid}"), &a.server).await.json;
    assert_eq!(after["amount_refunded"], 10_000);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM refunds").await, 2);
}

async fn only_admins_refund_unless_granted(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let p = paid(&s, &a, 5_000).await;
    let body = json!({"payment": p["id"], "amount": 100});
    for key in [&a.server, &a.publishable] {
        let r = s.post("/v1/refunds", key, body.clone()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.error().0, "permission_error");
    }
    let granted = s
        .post(
            &format!("/v1/apps/{}/keys", a.id),
            &a.admin,
            json!({"role": "server", "permissions": ["refunds:write"]}),
        )
        .await;
    let key = granted.json["secret"].as_str().unwrap();
    assert_eq!(
        s.post("/v1/refunds", key, body.clone()).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.get("/v1/refunds", &a.server).await.status,
        StatusCode::OK,
        "a server key reads refunds"
    );
    assert_eq!(db.scalar("SELECT COUNT(*) FROM refunds").await, 1);
}

async fn concurrent_refunds_never_pass_the_capture(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    for round in 0..2 {
        let p = paid(&s, &a, 10_000).await;
        let pid = p["id"].as_str().unwrap().to_owned();
        let results = futures::future::join_all((0..20).map(|_| {
            s.post(
                "/v1/refunds",
                &a.admin,
                json!({"payment": pid, "amount": 1_000}),
            )
        }))
        .await;
        let ok = results
            .iter()
            .filter(|r| r.status == StatusCode::CREATED)
            .count();
        let refused = results
            .iter()
            .filter(|r| {
                r.status == StatusCode::UNPROCESSABLE_ENTITY && r.error().1 == "amount_too_large"
            })
            .count();
        assert_eq!(
            (ok, refused),
            (10, 10),
            "round {round}: {:?}",
            results.iter().map(|r| r.status).collect::<Vec<_>>()
        );
        let total = db
            .scalar(&format!("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM refunds WHERE payment_id = '{pid}' AND status = 'succeeded'"))
            .await;
        assert_eq!(total, 10_000, "round {round}");
        let p = s.get(&format!("/v1/payments/{pid}"), &a.server).await.json;
        assert_eq!(
            (p["amount_refunded"].as_i64(), p["status"].as_str()),
            (Some(10_000), Some("refunded"))
        );
    }
}

fn refund_answer(req: &crate::stub::Recorded, id: &str, status: &str) -> Value {
    fixture(
        "refund",
        json!({"id": id, "amount": req.form_get("amount").unwrap().parse::<i64>().unwrap(), "currency": "usd", "status": status,
               "payment_intent": req.form_get("payment_intent"), "charge": "ch_stub", "failure_reason": null,
               "metadata": {"pb_refund": req.form_get("metadata[pb_refund]"), "pb_payment": req.form_get("metadata[pb_payment]")}}),
    )
}

fn stub_answers(req: &crate::stub::Recorded, refund_delay_ms: u64) -> (u16, Value) {
    match req.path.as_str() {
        p if p.starts_with("/v1/customers") => {
            (200, fixture("customer", json!({"id": "cus_stub"})))
        }
        p if p.ends_with("/attach") => (
            200,
            fixture(
                "payment_method",
                json!({"id": "pm_stub", "customer": "cus_stub"}),
            ),
        ),
        "/v1/payment_intents" => (
            200,
            fixture(
                "payment_intent",
                json!({"id": format!("pi_stub_{}", req.form_get("metadata[pb_payment]").unwrap()),
                "amount": req.form_get("amount").unwrap().parse::<i64>().unwrap(), "currency": "usd", "status": "succeeded",
                "amount_received": req.form_get("amount").unwrap().parse::<i64>().unwrap(), "amount_capturable": 0,
                "last_payment_error": null, "latest_charge": "ch_stub", "transfer_data": null, "metadata": {}}),
            ),
        ),
        "/v1/refunds" => {
            let mut r = refund_answer(
                req,
                &format!("re_stub_{}", req.form_get("metadata[pb_refund]").unwrap()),
                "succeeded",
            );
            r["__delay_ms"] = json!(refund_delay_ms);
            (200, r)
        }
        _ => (
            404,
            stripe_error("invalid_request_error", "resource_missing", "none"),
        ),
    }
}

async fn stripe_paid(s: &Server, a: &AppKeys, amount: i64) -> String {
    let c = s
        .post(
            "/v1/customers",
            &a.server,
            json!({"external_id": format!("stub-{amount}")}),
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

async fn stripe_app(s: &Server) -> AppKeys {
    let a = s.app("test").await;
    s.put("/v1/payment_config", &a.admin, json!({"provider": "stripe", "provider_public_key": "pk_test_x", "provider_secret_key": "sk_test_x"}))
        .await;
    s.put(
        "/v1/payment_config/signing_secret",
        &a.admin,
        json!({"signing_secret": "whsec_refund_tests_0000"}),
    )
    .await;
    a
}

async fn one_idempotency_key_makes_one_refund_and_one_provider_call(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let stub = Stub::start(|req, _| stub_answers(req, 300)).await;
    let s = Server::start_with(&db, &[("PAYBRIDGE_STRIPE_API_BASE", &stub.base)]).await;
    let a = stripe_app(&s).await;
    let pid = stripe_paid(&s, &a, 10_000).await;
    let send = || {
        s.call_with(
            Method::POST,
            "/v1/refunds",
            Some(&a.admin),
            Some(json!({"payment": pid, "amount": 2_500})),
            &[("idempotency-key", "refund-once")],
        )
    };
    let results = futures::future::join_all((0..10).map(|_| send())).await;
    for r in &results {
        assert!(
            r.status == StatusCode::CREATED || r.status == StatusCode::CONFLICT,
            "{}",
            r.body
        );
    }
    // Once the first finished, every retry replays it.
    let replay = send().await;
    assert_eq!(
        replay.header("idempotent-replayed").as_deref(),
        Some("true")
    );
    let ids: std::collections::BTreeSet<String> = results
        .iter()
        .chain(std::iter::once(&replay))
        .filter(|r| r.status == StatusCode::CREATED)
        .map(|r| r.json["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        stub.calls("POST", "/v1/refunds").len(),
        1,
        "one provider call"
    );
    let call = &stub.calls("POST", "/v1/refunds")[0];
    let rid = ids.iter().next().unwrap();
    assert_eq!(
        call.header("idempotency-key"),
        Some(format!("pb_{rid}_create").as_str())
    );
    assert_eq!(call.form_get("amount"), Some("2500"));
    assert_eq!(db.scalar("SELECT COUNT(*) FROM refunds").await, 1);
}

async fn a_refund_event_before_the_answer_is_applied_once(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let stub = Stub::start(|req, _| stub_answers(req, 1_500)).await;
    let s = Server::start_with(&db, &[("PAYBRIDGE_STRIPE_API_BASE", &stub.base)]).await;
    let a = stripe_app(&s).await;
    let pid = stripe_paid(&s, &a, 8_000).await;
    let refund = s.post(
        "/v1/refunds",
        &a.admin,
        json!({"payment": pid, "amount": 3_000}),
    );
    let early_event = async {
        // While the provider "thinks", its event arrives, naming our refund.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let call = loop {
            if let Some(c) = stub.calls("POST", "/v1/refunds").pop() {
                break c;
            }
            assert!(std::time::Instant::now() < deadline, "no refund call");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        let ours = call.form_get("metadata[pb_refund]").unwrap().to_owned();
        let body = json!({"id": "evt_early_refund", "object": "event", "type": "refund.updated", "created": 1, "livemode": false,
            "data": {"object": refund_answer(&call, &format!("re_stub_{ours}"), "succeeded")}})
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
                    signature::sign(body.as_bytes(), b"whsec_refund_tests_0000", now),
                )
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        ours
    };
    let (answer, ours) = tokio::join!(refund, early_event);
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.json["id"], ours.as_str());
    assert_eq!(answer.json["status"], "succeeded");
    assert_eq!(
        s.get("/v1/provider_events/evt_early_refund", &a.admin)
            .await
            .json["outcome"],
        "processed"
    );
    let p = s.get(&format!("/v1/payments/{pid}"), &a.server).await.json;
    assert_eq!(p["amount_refunded"], 3_000, "applied once, not twice");
    assert_eq!(
        s.event_types(&a.admin, "type=refund.succeeded").await.len(),
        1
    );
    assert_eq!(
        db.scalar("SELECT amount_refunding FROM payments").await,
        3_000
    );
}

async fn refunds_against_localstripe(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let ls = LocalStripe::start().await;
    let s = Server::start_with(&db, &[("PAYBRIDGE_STRIPE_API_BASE", &ls.base)]).await;
    let a = s.app("test").await;
    s.put("/v1/payment_config", &a.admin, json!({"provider": "stripe", "provider_public_key": "pk_test_x", "provider_secret_key": "sk_test_localstripe"}))
        .await;
    let c = s
        .post(
            "/v1/customers",
            &a.server,
            json!({"external_id": "ls-refund"}),
        )
        .await;
    let cid = c.json["id"].as_str().unwrap().to_owned();
    s.post(
        &format!("/v1/customers/{cid}/payment_methods"),
        &a.server,
        json!({"payment_method": "pm_card_visa"}),
    )
    .await;
    let p = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 6_000, "currency": "eur", "method": "card", "customer": cid}),
        )
        .await;
    assert_eq!(p.json["status"], "succeeded", "{}", p.body);
    let pid = p.json["id"].as_str().unwrap();
    for amount in [1_000, 2_000] {
        let r = s
            .post(
                "/v1/refunds",
                &a.admin,
                json!({"payment": pid, "amount": amount}),
            )
            .await;
        assert_eq!(
            (r.status, r.json["status"].as_str()),
            (StatusCode::CREATED, Some("succeeded")),
            "{}",
            r.body
        );
    }
    // localstripe would accept this; paybridge's own limit refuses it before asking.
    let over = s
        .post(
            "/v1/refunds",
            &a.admin,
            json!({"payment": pid, "amount": 3_001}),
        )
        .await;
    assert_eq!(over.error().1, "amount_too_large");
    let rest = s
        .post("/v1/refunds", &a.admin, json!({"payment": pid}))
        .await;
    assert_eq!(rest.json["amount"], 3_000);
    let after = s.get(&format!("/v1/payments/{pid}"), &a.server).await.json;
    assert_eq!(
        (after["status"].as_str(), after["amount_refunded"].as_i64()),
        (Some("refunded"), Some(6_000))
    );
}
