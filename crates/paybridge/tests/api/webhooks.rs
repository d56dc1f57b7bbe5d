//! Webhooks in: signatures (interop with Stripe's own Python library, and every way a
//! signature can be wrong), storage once per event, concurrent duplicates, any order,
//! events about objects not known yet, unhandled types, secret rotation.

use paybridge_core::stripe::signature;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{AppKeys, Backend, Resp, Server, TestDb};

paybridge_testkit::on_both!(
    stripes_own_library_signs_what_we_verify,
    bad_signatures_are_refused_and_nothing_is_stored,
    concurrent_copies_of_one_event_apply_once,
    events_apply_the_same_in_any_order,
    unknown_objects_wait_and_unhandled_types_are_kept,
    the_previous_signing_secret_works_during_its_grace,
);

pub(crate) const SECRET: &str = "whsec_test_paybridge_webhooks_0123456789";

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A sandbox app whose signing secret the test knows, so it can sign events itself.
pub(crate) async fn app_with_secret(s: &Server) -> AppKeys {
    let a = s.sandbox_app().await;
    let r = s
        .put(
            "/v1/payment_config/signing_secret",
            &a.admin,
            json!({"signing_secret": SECRET}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    a
}

pub(crate) async fn send(s: &Server, app: &str, body: &str, header: Option<&str>) -> Resp {
    let mut req = s
        .http
        .post(s.url(&format!("/v1/webhooks/stripe/{app}")))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(h) = header {
        req = req.header("stripe-signature", h);
    }
    Resp::from(req.send().await.unwrap()).await
}

pub(crate) async fn send_signed(s: &Server, app: &str, event: &Value) -> Resp {
    let body = event.to_string();
    let header = signature::sign(body.as_bytes(), SECRET.as_bytes(), now());
    send(s, app, &body, Some(&header)).await
}

pub(crate) fn event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    json!({"id": id, "object": "event", "type": kind, "created": created, "livemode": false,
           "api_version": "2024-06-20", "data": {"object": object}})
}

/// A payment intent payment waiting for its card, and its provider intent id.
pub(crate) async fn pending_intent(s: &Server, a: &AppKeys, amount: i64) -> (String, String) {
    let r = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": amount, "currency": "usd", "method": "payment_intent"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    (
        r.json["id"].as_str().unwrap().to_owned(),
        r.json["provider"]["payment_intent"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

pub(crate) fn intent(pi: &str, payment: &str, status: &str, amount: i64, extra: Value) -> Value {
    let mut o = json!({"id": pi, "object": "payment_intent", "status": status, "amount": amount, "currency": "usd",
                       "amount_capturable": 0, "amount_received": if status == "succeeded" { amount } else { 0 },
                       "metadata": {"pb_payment": payment}, "client_secret": format!("{pi}_secret_abc")});
    if let (Some(m), Some(e)) = (o.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    o
}

async fn stripes_own_library_signs_what_we_verify(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = app_with_secret(&s).await;
    let (payment, pi) = pending_intent(&s, &a, 1500).await;
    let body = event(
        "evt_py_1",
        "payment_intent.succeeded",
        now(),
        intent(&pi, &payment, "succeeded", 1500, json!({})),
    )
    .to_string();
    let header = paybridge_testkit::python(
        "import stripe, sys; print(stripe.WebhookSignature.generate_signature_header(sys.argv[1], sys.argv[2]))",
        &[&body, SECRET],
    );
    assert!(
        header.starts_with("t=") && header.contains(",v1="),
        "{header}"
    );
    let r = send(&s, &a.id, &body, Some(&header)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json, json!({"received": true, "duplicate": false}));
    let p = s.get(&format!("/v1/payments/{payment}"), &a.server).await;
    assert_eq!(p.json["status"], "succeeded");
    // The payload is stored, with the client secret redacted.
    let stored = s.get("/v1/provider_events/evt_py_1", &a.admin).await;
    assert_eq!(stored.json["outcome"], "processed");
    assert_eq!(
        stored.json["payload"]["data"]["object"]["client_secret"],
        "[redacted]"
    );
    assert!(!db
        .all_stored_text()
        .await
        .contains(&format!("{pi}_secret_abc")));
}

async fn bad_signatures_are_refused_and_nothing_is_stored(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = app_with_secret(&s).await;
    let body = event(
        "evt_bad",
        "customer.created",
        now(),
        json!({"id": "cus_1", "object": "customer"}),
    )
    .to_string();
    let good = signature::sign(body.as_bytes(), SECRET.as_bytes(), now());
    let tampered = body.replace("cus_1", "cus_2");
    let stale = signature::sign(body.as_bytes(), SECRET.as_bytes(), now() - 400);
    let future = signature::sign(body.as_bytes(), SECRET.as_bytes(), now() + 400);
    let wrong = signature::sign(body.as_bytes(), b"whsec_someone_elses_secret", now());
    let cases: Vec<(&str, &str, Option<String>, &str)> = vec![
        (
            "tampered body",
            &tampered,
            Some(good.clone()),
            "signature_mismatch",
        ),
        (
            "stale timestamp",
            &body,
            Some(stale),
            "timestamp_out_of_tolerance",
        ),
        (
            "future timestamp",
            &body,
            Some(future),
            "timestamp_out_of_tolerance",
        ),
        ("wrong secret", &body, Some(wrong), "signature_mismatch"),
        (
            "garbage header",
            &body,
            Some("garbage".into()),
            "signature_invalid_header",
        ),
        (
            "no v1",
            &body,
            Some(format!("t={}", now())),
            "signature_invalid_header",
        ),
        ("no header", &body, None, "signature_missing"),
    ];
    for (what, payload, header, code) in cases {
        let r = send(&s, &a.id, payload, header.as_deref()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.body);
        assert_eq!(r.error().1, code, "{what}");
    }
    // A signed body that is not an event is refused too.
    let not_event = r#"{"hello":"world"}"#;
    let r = send(
        &s,
        &a.id,
        not_event,
        Some(&signature::sign(
            not_event.as_bytes(),
            SECRET.as_bytes(),
            now(),
        )),
    )
    .await;
    assert_eq!(
        (r.status, r.error().1.as_str()),
        (StatusCode::BAD_REQUEST, "event_invalid")
    );
    // A live event sent to a test app.
    let live = event(
        "evt_live",
        "customer.created",
        now(),
        json!({"id": "cus_1"}),
    );
    let mut live = live;
    live["livemode"] = json!(true);
    let r = send_signed(&s, &a.id, &live).await;
    assert_eq!(r.error().1, "livemode_mismatch");
    // A signed event holding U+0000 (which PostgreSQL's text cannot store) is a 400,
    // wherever the character is.
    for (id, object_id) in [("evt_nul\u{0}", "cus_1"), ("evt_nul", "cus_\u{0}")] {
        let nul = event(id, "customer.created", now(), json!({"id": object_id}));
        let r = send_signed(&s, &a.id, &nul).await;
        assert_eq!(
            (r.status, r.error().1.as_str()),
            (StatusCode::BAD_REQUEST, "event_invalid"),
            "{}",
            r.body
        );
    }
    // An unknown app is a 404.
    assert_eq!(
        send(&s, "app_nope", &body, Some(&good)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM provider_events").await,
        0,
        "nothing unverified is stored"
    );
    let m = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(r#"paybridge_webhook_events_total{outcome="rejected"} 11"#),
        "{m}"
    );
    // The good one passes.
    assert_eq!(
        send(&s, &a.id, &body, Some(&good)).await.status,
        StatusCode::OK
    );
}

async fn concurrent_copies_of_one_event_apply_once(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = app_with_secret(&s).await;
    let (payment, pi) = pending_intent(&s, &a, 4200).await;
    let ev = event(
        "evt_dup_1",
        "payment_intent.succeeded",
        now(),
        intent(&pi, &payment, "succeeded", 4200, json!({})),
    );
    let copies = futures::future::join_all((0..20).map(|_| send_signed(&s, &a.id, &ev))).await;
    assert!(
        copies.iter().all(|r| r.status == StatusCode::OK),
        "{:?}",
        copies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    let first = copies
        .iter()
        .filter(|r| r.json["duplicate"] == false)
        .count();
    assert_eq!(first, 1, "exactly one copy applies");
    assert_eq!(
        s.get(&format!("/v1/payments/{payment}"), &a.server)
            .await
            .json["status"],
        "succeeded"
    );
    assert_eq!(
        s.event_types(
            &a.admin,
            &format!("payment={payment}&type=payment.succeeded")
        )
        .await
        .len(),
        1
    );
    assert_eq!(
        s.get("/v1/provider_events/evt_dup_1", &a.admin).await.json["received_count"],
        20
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM provider_events WHERE id = 'evt_dup_1'")
            .await,
        1
    );
    let m = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(r#"paybridge_webhook_events_total{outcome="duplicate"} 19"#),
        "{m}"
    );
}

async fn events_apply_the_same_in_any_order(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = app_with_secret(&s).await;
    let t = now() - 100;
    let history = |payment: &str, pi: &str, tag: &str| {
        let charge = |status: &str, extra: Value| {
            let mut c = json!({"id": format!("ch_{tag}"), "object": "charge", "amount": 900, "currency": "usd", "payment_intent": pi,
                               "captured": status == "succeeded", "amount_captured": if status == "succeeded" { 900 } else { 0 },
                               "status": status, "metadata": {"pb_payment": payment}, "payment_method": "pm_1"});
            if let (Some(m), Some(e)) = (c.as_object_mut(), extra.as_object()) {
                m.extend(e.clone());
            }
            c
        };
        // Declined with one card, paid with another: Stripe names the declined card in the
        // error (expanded) and on the failed charge, the paying card on its charge.
        let declined_card = json!({"brand": "visa", "last4": "0002"});
        let decline = json!({"last_payment_error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
                             "payment_method": {"id": "pm_0", "object": "payment_method", "type": "card", "card": declined_card}}});
        vec![
            event(
                &format!("evt_{tag}_1"),
                "payment_intent.created",
                t,
                intent(pi, payment, "requires_payment_method", 900, json!({})),
            ),
            event(
                &format!("evt_{tag}_2"),
                "payment_intent.requires_action",
                t + 1,
                intent(pi, payment, "requires_action", 900, json!({})),
            ),
            event(
                &format!("evt_{tag}_3"),
                "charge.failed",
                t + 2,
                charge(
                    "failed",
                    json!({"failure_code": "card_declined", "outcome": {"reason": "insufficient_funds"},
                           "payment_method": "pm_0", "payment_method_details": {"type": "card", "card": declined_card}}),
                ),
            ),
            event(
                &format!("evt_{tag}_4"),
                "payment_intent.payment_failed",
                t + 2,
                intent(pi, payment, "requires_payment_method", 900, decline),
            ),
            event(
                &format!("evt_{tag}_5"),
                "charge.succeeded",
                t + 3,
                charge(
                    "succeeded",
                    json!({"payment_method_details": {"type": "card", "card": {"brand": "mastercard", "last4": "4444"}}}),
                ),
            ),
            event(
                &format!("evt_{tag}_6"),
                "payment_intent.succeeded",
                t + 3,
                intent(pi, payment, "succeeded", 900, json!({})),
            ),
        ]
    };
    let (p1, pi1) = pending_intent(&s, &a, 900).await;
    let (p2, pi2) = pending_intent(&s, &a, 900).await;
    for ev in history(&p1, &pi1, "inorder") {
        assert_eq!(send_signed(&s, &a.id, &ev).await.status, StatusCode::OK);
    }
    // The same history reversed, with every event delivered twice.
    let mut shuffled = history(&p2, &pi2, "reversed");
    shuffled.reverse();
    for ev in shuffled.iter().chain(shuffled.iter()) {
        assert_eq!(send_signed(&s, &a.id, ev).await.status, StatusCode::OK);
    }
    let strip = |mut v: Value| {
        for k in [
            "id",
            "order",
            "provider",
            "created",
            "updated",
            "payment_url",
            "client_secret",
        ] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    let one = strip(s.get(&format!("/v1/payments/{p1}"), &a.server).await.json);
    let two = strip(s.get(&format!("/v1/payments/{p2}"), &a.server).await.json);
    assert_eq!(one, two, "in order and reversed end alike");
    assert_eq!(one["status"], "succeeded");
    // The card that paid, whichever came last: a late decline does not relabel it.
    assert_eq!(one["card"], json!({"brand": "mastercard", "last4": "4444"}));
    assert_eq!(one["amount_captured"], 900);
    // In order, the payment went pending → requires_action (3-D Secure) → failed →
    // succeeded; reversed, success came first and the late events changed nothing.
    assert_eq!(
        s.event_types(&a.admin, &format!("payment={p1}")).await,
        vec![
            "payment.pending",
            "payment.requires_action",
            "payment.failed",
            "payment.succeeded"
        ]
    );
    assert_eq!(
        s.event_types(&a.admin, &format!("payment={p2}")).await,
        vec!["payment.pending", "payment.succeeded"]
    );
}

async fn unknown_objects_wait_and_unhandled_types_are_kept(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = app_with_secret(&s).await;
    let r = send_signed(&s, &a.id, &event("evt_unknown", "payment_intent.succeeded", now(), json!({"id": "pi_not_yet_known", "status": "succeeded", "amount": 100, "currency": "usd"}))).await;
    assert_eq!(r.status, StatusCode::OK, "kept and acknowledged");
    let pe = s.get("/v1/provider_events/evt_unknown", &a.admin).await;
    assert_eq!(pe.json["outcome"], "pending", "{}", pe.body);
    let r = send_signed(
        &s,
        &a.id,
        &event(
            "evt_other",
            "customer.created",
            now(),
            json!({"id": "cus_1", "object": "customer"}),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        s.get("/v1/provider_events/evt_other", &a.admin).await.json["outcome"],
        "ignored"
    );
    let list = s
        .get("/v1/provider_events?type=customer.created", &a.admin)
        .await;
    assert_eq!(list.json["data"].as_array().unwrap().len(), 1);
    assert_eq!(list.json["data"][0]["id"], "evt_other");
    // Another app never sees them.
    let b2 = s.sandbox_app().await;
    assert_eq!(
        s.get("/v1/provider_events/evt_other", &b2.admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get("/v1/provider_events", &a.server).await.status,
        StatusCode::FORBIDDEN
    );
    // An event whose amount is not the payment's breaks the ledger's invariants: it is
    // rejected (never retried), not applied, and the app is told (`ledger.anomaly`).
    let (payment, pi) = pending_intent(&s, &a, 700).await;
    let r = send_signed(
        &s,
        &a.id,
        &event(
            "evt_wrong_amount",
            "payment_intent.succeeded",
            now(),
            intent(&pi, &payment, "succeeded", 70_000, json!({})),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        s.get("/v1/provider_events/evt_wrong_amount", &a.admin)
            .await
            .json["outcome"],
        "rejected"
    );
    assert_eq!(
        s.get(&format!("/v1/payments/{payment}"), &a.server)
            .await
            .json["status"],
        "pending"
    );
    assert_eq!(
        s.event_types(&a.admin, &format!("payment={payment}&type=ledger.anomaly"))
            .await
            .len(),
        1
    );
}

async fn the_previous_signing_secret_works_during_its_grace(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = app_with_secret(&s).await;
    let r = s
        .put(
            "/v1/payment_config/signing_secret",
            &a.admin,
            json!({"signing_secret": "whsec_the_new_one_0000000000"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let ev = event(
        "evt_rot_1",
        "customer.created",
        now(),
        json!({"id": "cus_1"}),
    );
    assert_eq!(
        send_signed(&s, &a.id, &ev).await.status,
        StatusCode::OK,
        "the old secret still verifies"
    );
    let body = event(
        "evt_rot_2",
        "customer.created",
        now(),
        json!({"id": "cus_2"}),
    )
    .to_string();
    let both = format!(
        "{},v1={}",
        signature::sign(body.as_bytes(), b"whsec_the_new_one_0000000000", now()),
        signature::sign(body.as_bytes(), b"whsec_unrelated", now())
            .split("v1=")
            .nth(1)
            .unwrap()
    );
    assert_eq!(
        send(&s, &a.id, &body, Some(&both)).await.status,
        StatusCode::OK,
        "several v1 values"
    );
    // Once the grace period is over, only the new secret verifies.
    db.execute("UPDATE payment_configs SET previous_signing_secret_expires = 1000")
        .await;
    // Verification material is cached for a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let ev = event(
        "evt_rot_3",
        "customer.created",
        now(),
        json!({"id": "cus_3"}),
    );
    assert_eq!(
        send_signed(&s, &a.id, &ev).await.status,
        StatusCode::BAD_REQUEST
    );
}
