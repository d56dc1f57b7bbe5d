//! Money in on the sandbox, end to end: hosted checkout, declines, expiry, single use,
//! zero-decimal amounts, manual capture, saved cards charged off-session, payment
//! intents, and the order rules. State moves only by webhook (or by the provider's
//! answer to our own call), never by the browser's redirect.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{Backend, Server, TestDb};

paybridge_testkit::on_both!(
    a_checkout_is_paid_by_the_webhook_not_the_redirect,
    declined_cards_fail_and_the_session_stays_open,
    sessions_expire_by_helper_and_by_the_worker,
    a_session_cannot_be_completed_twice,
    manual_capture_then_partial_capture,
    saved_cards_are_charged_off_session,
    payment_intents_and_cancel,
    orders_refuse_overpayment_and_second_payment,
    clients_cannot_set_prices_or_override_the_amount,
    concurrent_charges_of_one_order_take_it_once,
);

/// What a customer fills in on the hosted page, with this card number.
fn card_form(number: &str) -> [(&'static str, String); 4] {
    [
        ("email", "customer@example.com".into()),
        ("card_number", number.into()),
        ("expiry", "12 / 34".into()),
        ("cvc", "123".into()),
    ]
}

fn page_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn a_checkout_is_paid_by_the_webhook_not_the_redirect(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    // The sandbox sends its events 2 s after the change, as Stripe's arrive after the redirect.
    let s = Server::start_with(&db, &[("PAYBRIDGE_SANDBOX_WEBHOOK_DELAY_MS", "2000")]).await;
    let a = s.sandbox_app().await;
    let tea = s.product(&a.admin, "Matcha", 500, "jpy").await;
    let cs = s.checkout(&a.publishable, &tea, 1, json!({})).await;
    assert_eq!(cs["status"], "open");
    assert_eq!(cs["amount_total"], 500, "500 JPY stays 500");
    assert_eq!(cs["currency"], "jpy");
    let url = cs["url"].as_str().unwrap();
    let order_path = format!(
        "/v1/orders/{}?client_secret={}",
        cs["order"].as_str().unwrap(),
        cs["client_secret"].as_str().unwrap()
    );

    // The hosted page shows what is being paid.
    let page = page_client().get(url).send().await.unwrap();
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("Matcha") && html.contains("¥500"), "{html}");

    // Paying redirects to the success URL at once…
    let r = page_client()
        .post(url)
        .form(&card_form("4242 4242 4242 4242"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("https://shop.example/thanks?session=cs_test_"),
        "{location}"
    );
    // …but the redirect changes nothing: until the signed event arrives, nothing is paid.
    let order = s.get(&order_path, &a.publishable).await.json;
    assert_eq!(order["status"], "open");
    assert_eq!(order["amount_paid"], 0);
    assert_ne!(order["payments"][0]["status"], "succeeded");

    let order = s
        .until(&order_path, &a.publishable, |o| o["status"] == "paid")
        .await;
    assert_eq!(order["amount_paid"], 500);
    let p = &order["payments"][0];
    assert_eq!(p["status"], "succeeded");
    assert_eq!(p["amount_captured"], 500);
    assert!(p["provider"]["payment_intent"]
        .as_str()
        .unwrap()
        .starts_with("pi_"));
    assert!(p["provider"]["charge"].as_str().unwrap().starts_with("ch_"));
    let pid = p["id"].as_str().unwrap();
    let types = s.event_types(&a.admin, &format!("payment={pid}")).await;
    assert_eq!(
        types.iter().filter(|t| *t == "payment.succeeded").count(),
        1,
        "{types:?}"
    );
    assert_eq!(s.event_types(&a.admin, "type=order.paid").await.len(), 1);
    // Every provider event was stored and processed.
    // (they may still be arriving: the sandbox sends them one after the other)
    let pe = s
        .until("/v1/provider_events?limit=50", &a.admin, |l| {
            l["data"].as_array().is_some_and(|d| d.len() >= 3)
        })
        .await;
    let pe = crate::common::Resp {
        status: StatusCode::OK,
        headers: Default::default(),
        body: pe.to_string(),
        json: pe,
    };
    let kinds: Vec<&str> = pe.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for k in [
        "checkout.session.completed",
        "payment_intent.succeeded",
        "charge.succeeded",
    ] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }
    assert!(
        pe.json["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["outcome"] == "processed"),
        "{}",
        pe.body
    );
}

async fn declined_cards_fail_and_the_session_stays_open(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let shirt = s.product(&a.admin, "Shirt", 2500, "usd").await;
    let cs = s.checkout(&a.publishable, &shirt, 1, json!({})).await;
    let complete = format!(
        "/v1/sandbox/checkout_sessions/{}/complete",
        cs["id"].as_str().unwrap()
    );
    let pay_path = format!("/v1/payments/{}", cs["payment"].as_str().unwrap());
    for (card, code, decline) in [
        ("4000 0000 0000 0002", "card_declined", "generic_decline"),
        ("4000 0000 0000 9995", "card_declined", "insufficient_funds"),
        ("4000 0000 0000 0069", "expired_card", "expired_card"),
    ] {
        let r = s
            .post(&complete, &a.publishable, json!({"card_number": card}))
            .await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{card}: {}", r.body);
        assert_eq!(r.error().1, code);
        assert_eq!(r.json["error"]["decline_code"], decline);
        let p = s
            .until(&pay_path, &a.server, |p| {
                p["failure"]["decline_code"] == decline
            })
            .await;
        assert_eq!(p["status"], "failed");
    }
    // The hosted page shows a decline and keeps the session open.
    let r = page_client()
        .post(cs["url"].as_str().unwrap())
        .form(&card_form("4000000000000002"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYMENT_REQUIRED);
    assert!(r.text().await.unwrap().contains("Your card was declined."));
    // A retry with a good card on the same session succeeds.
    let r = s
        .post(
            &complete,
            &a.publishable,
            json!({"card_number": "4242424242424242"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let p = s
        .until(&pay_path, &a.server, |p| p["status"] == "succeeded")
        .await;
    assert_eq!(p["failure"], Value::Null);
    assert_eq!(
        s.event_types(&a.admin, "type=payment.failed").await.len(),
        1,
        "one event per real change"
    );
}

async fn sessions_expire_by_helper_and_by_the_worker(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start_with(&db, &[("PAYBRIDGE_HOUSEKEEPING_INTERVAL", "1")]).await;
    let a = s.sandbox_app().await;
    let shirt = s.product(&a.admin, "Shirt", 2500, "usd").await;
    // By the provider's event.
    let cs = s
        .checkout(&a.publishable, &shirt, 1, json!({"expires_in": 1800}))
        .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((cs["expires_at"].as_i64().unwrap() - now - 1800).abs() < 5);
    let r = s
        .post(
            &format!(
                "/v1/sandbox/checkout_sessions/{}/expire",
                cs["id"].as_str().unwrap()
            ),
            &a.publishable,
            json!({}),
        )
        .await;
    assert_eq!(r.json["provider_status"], "expired");
    let pay_path = format!("/v1/payments/{}", cs["payment"].as_str().unwrap());
    s.until(&pay_path, &a.server, |p| p["status"] == "expired")
        .await;
    let c = s
        .until(
            &format!("/v1/checkout/sessions/{}", cs["id"].as_str().unwrap()),
            &a.publishable,
            |c| c["status"] == "expired",
        )
        .await;
    assert_eq!(c["status"], "expired");
    // Expired sessions cannot be paid.
    let r = s
        .complete_checkout(&a.publishable, &cs, "4242424242424242")
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    // By the worker, once the expiry has passed (moved into the past here).
    let cs2 = s.checkout(&a.publishable, &shirt, 1, json!({})).await;
    db.execute(&format!(
        "UPDATE checkout_sessions SET expires_at = 1000 WHERE id = '{}'",
        cs2["id"].as_str().unwrap()
    ))
    .await;
    s.until(
        &format!("/v1/payments/{}", cs2["payment"].as_str().unwrap()),
        &a.server,
        |p| p["status"] == "expired",
    )
    .await;
    // Bad expiry windows are refused.
    for bad in [60, 90_000] {
        let r = s
            .post(
                "/v1/checkout/sessions",
                &a.publishable,
                json!({"line_items": [{"product": shirt}], "success_url": "https://a.example/s", "cancel_url": "https://a.example/c", "expires_in": bad}),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(r.error().2.as_deref(), Some("expires_in"));
    }
}

async fn a_session_cannot_be_completed_twice(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let shirt = s.product(&a.admin, "Shirt", 2500, "usd").await;
    let cs = s.checkout(&a.publishable, &shirt, 2, json!({})).await;
    let complete = format!(
        "/v1/sandbox/checkout_sessions/{}/complete",
        cs["id"].as_str().unwrap()
    );
    let first = s
        .post(
            &complete,
            &a.publishable,
            json!({"card_number": "4242424242424242"}),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let again = s
        .post(
            &complete,
            &a.publishable,
            json!({"card_number": "4242424242424242"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error().1, "checkout_session_complete");
    let page = page_client()
        .post(cs["url"].as_str().unwrap())
        .form(&card_form("4242424242424242"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::CONFLICT);
    let order = s
        .until(
            &format!("/v1/orders/{}", cs["order"].as_str().unwrap()),
            &a.server,
            |o| o["status"] == "paid",
        )
        .await;
    assert_eq!(order["amount_paid"], 5000, "paid once, not twice");
    assert_eq!(order["payments"].as_array().unwrap().len(), 1);
    // A paid order takes no new checkout (a publishable key names it with its secret).
    let r = s
        .post(
            "/v1/checkout/sessions",
            &a.publishable,
            json!({"order": cs["order"], "client_secret": cs["client_secret"], "success_url": "https://a.example/s", "cancel_url": "https://a.example/c"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error().1, "order_already_paid");
}

async fn manual_capture_then_partial_capture(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let r = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 10_000, "currency": "usd", "method": "payment_link", "capture": "manual",
                   "success_url": "https://a.example/s", "cancel_url": "https://a.example/c"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json["status"], "pending");
    let pid = r.json["id"].as_str().unwrap().to_owned();
    assert!(r.json["payment_url"]
        .as_str()
        .unwrap()
        .contains("/sandbox/pay/"));
    let order = r.json["order"].as_str().unwrap().to_owned();
    let checkout = s
        .get(&format!("/v1/payments?order={order}"), &a.server)
        .await;
    assert_eq!(checkout.json["data"].as_array().unwrap().len(), 1);
    // Capturing before authorisation is refused.
    let early = s
        .post(&format!("/v1/payments/{pid}/capture"), &a.server, json!({}))
        .await;
    assert_eq!(early.status, StatusCode::CONFLICT);
    let form = page_client()
        .post(r.json["payment_url"].as_str().unwrap())
        .form(&card_form("4242424242424242"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::SEE_OTHER);
    let p = s
        .until(&format!("/v1/payments/{pid}"), &a.server, |p| {
            p["status"] == "requires_capture"
        })
        .await;
    assert_eq!(p["amount_capturable"], 10_000);
    assert_eq!(
        s.get(&format!("/v1/orders/{order}"), &a.server).await.json["amount_paid"],
        0,
        "an authorisation is not a payment"
    );
    let too_much = s
        .post(
            &format!("/v1/payments/{pid}/capture"),
            &a.server,
            json!({"amount": 10_001}),
        )
        .await;
    assert_eq!(too_much.status, StatusCode::UNPROCESSABLE_ENTITY);
    let nothing = s
        .post(
            &format!("/v1/payments/{pid}/capture"),
            &a.server,
            json!({"amount": 0}),
        )
        .await;
    assert_eq!(nothing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        (nothing.error().1.as_str(), nothing.error().2.as_deref()),
        ("invalid_amount", Some("amount")),
        "{}",
        nothing.body
    );
    let cap = s
        .post(
            &format!("/v1/payments/{pid}/capture"),
            &a.server,
            json!({"amount": 7_500}),
        )
        .await;
    assert_eq!(cap.status, StatusCode::OK, "{}", cap.body);
    assert_eq!(
        cap.json["status"], "succeeded",
        "the provider's answer moves the state"
    );
    assert_eq!(cap.json["amount_captured"], 7_500);
    assert_eq!(cap.json["amount_capturable"], 0);
    let o = s.get(&format!("/v1/orders/{order}"), &a.server).await.json;
    assert_eq!(o["amount_paid"], 7_500);
    assert_eq!(
        o["status"], "open",
        "a partial capture leaves the order open"
    );
    // Capturing again is harmless and changes nothing.
    let again = s
        .post(&format!("/v1/payments/{pid}/capture"), &a.server, json!({}))
        .await;
    assert_eq!(again.json["amount_captured"], 7_500);
    let p = s
        .until(&format!("/v1/payments/{pid}"), &a.server, |p| {
            p["amount_captured"] == 7_500
        })
        .await;
    assert_eq!(p["status"], "succeeded");
}

async fn saved_cards_are_charged_off_session(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let c = s
        .post(
            "/v1/customers",
            &a.server,
            json!({"external_id": "user-42", "email": "ada@example.com"}),
        )
        .await;
    assert_eq!(c.status, StatusCode::CREATED, "{}", c.body);
    let cid = c.json["id"].as_str().unwrap().to_owned();
    assert!(c.json["provider_customer_id"]
        .as_str()
        .unwrap()
        .starts_with("cus_"));
    let again = s
        .post(
            "/v1/customers",
            &a.server,
            json!({"external_id": "user-42", "name": "Ada"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "an upsert on external_id");
    assert_eq!(again.json["id"], cid.as_str());
    assert_eq!(again.json["email"], "ada@example.com");
    assert_eq!(again.json["name"], "Ada");

    let shirt = s.product(&a.admin, "Shirt", 2500, "usd").await;
    let no_customer = s
        .post(
            "/v1/checkout/sessions",
            &a.publishable,
            json!({"line_items": [{"product": shirt}], "save_card": true, "success_url": "https://a.example/s", "cancel_url": "https://a.example/c"}),
        )
        .await;
    assert_eq!(no_customer.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Saving onto an existing customer from the browser: with a customer session.
    let session = s
        .post(
            &format!("/v1/customers/{cid}/sessions"),
            &a.server,
            json!({}),
        )
        .await;
    let cs = s
        .checkout(
            &a.publishable,
            &shirt,
            1,
            json!({"customer": cid, "save_card": true,
                   "customer_session_secret": session.json["client_secret"]}),
        )
        .await;
    let r = s
        .complete_checkout(&a.publishable, &cs, "4242424242424242")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let cust = s
        .until(&format!("/v1/customers/{cid}"), &a.server, |c| {
            c["default_payment_method"].is_string()
        })
        .await;
    let card_id = cust["default_payment_method"].as_str().unwrap().to_owned();
    let cards = s
        .get(&format!("/v1/customers/{cid}/payment_methods"), &a.server)
        .await;
    assert_eq!(cards.json["data"][0]["last4"], "4242");
    assert_eq!(cards.json["data"][0]["default"], true);

    // Charge the saved card, off-session: the provider's answer settles it at once.
    let r = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 1999, "currency": "usd", "method": "card", "customer": cid}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json["status"], "succeeded");
    assert_eq!(r.json["payment_method"], card_id.as_str());
    assert_eq!(r.json["amount_captured"], 1999);

    // A card that attaches but declines: a 402 with the decline code, recorded as failed.
    let att = s
        .post(
            &format!("/v1/customers/{cid}/payment_methods"),
            &a.server,
            json!({"payment_method": "pm_card_visa_chargeDeclined", "default": true}),
        )
        .await;
    assert_eq!(att.status, StatusCode::CREATED, "{}", att.body);
    assert_eq!(att.json["default"], true);
    let r = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 500, "currency": "usd", "method": "card", "customer": cid}),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{}", r.body);
    assert_eq!(r.json["error"]["decline_code"], "generic_decline");
    let failed = s
        .get(
            &format!("/v1/payments?customer={cid}&status=failed"),
            &a.server,
        )
        .await;
    assert_eq!(failed.json["data"].as_array().unwrap().len(), 1);
    // A card refused when attached is not saved.
    let bad = s
        .post(
            &format!("/v1/customers/{cid}/payment_methods"),
            &a.server,
            json!({"payment_method": "pm_card_chargeDeclined"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(
        s.get(&format!("/v1/customers/{cid}/payment_methods"), &a.server)
            .await
            .json["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Detaching the default card clears the default.
    let default = s.get(&format!("/v1/customers/{cid}"), &a.server).await.json
        ["default_payment_method"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .call(
            Method::DELETE,
            &format!("/v1/customers/{cid}/payment_methods/{default}"),
            Some(&a.server),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        s.get(&format!("/v1/customers/{cid}"), &a.server).await.json["default_payment_method"],
        Value::Null
    );
    let r = s
        .post(
            &format!("/v1/customers/{cid}/payment_methods/{card_id}/default"),
            &a.server,
            json!({}),
        )
        .await;
    assert_eq!(r.json["default_payment_method"], card_id.as_str());
}

async fn payment_intents_and_cancel(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let r = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 1250, "currency": "eur", "method": "payment_intent"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let pid = r.json["id"].as_str().unwrap().to_owned();
    let secret = r.json["client_secret"].as_str().unwrap();
    assert!(secret.starts_with(r.json["provider"]["payment_intent"].as_str().unwrap()));
    assert!(
        !db.all_stored_text().await.contains(secret),
        "the client secret is stored sealed"
    );
    assert_eq!(
        s.get("/v1/config", &a.publishable).await.json["provider"],
        "sandbox"
    );
    let r = s
        .post(
            &format!("/v1/sandbox/payments/{pid}/confirm"),
            &a.publishable,
            json!({"card_number": "4242424242424242"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    s.until(&format!("/v1/payments/{pid}"), &a.server, |p| {
        p["status"] == "succeeded"
    })
    .await;

    let r = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 800, "currency": "eur", "method": "payment_intent"}),
        )
        .await;
    let pid = r.json["id"].as_str().unwrap().to_owned();
    let c = s
        .post(&format!("/v1/payments/{pid}/cancel"), &a.server, json!({}))
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    assert_eq!(c.json["status"], "canceled");
    let r = s
        .post(
            &format!("/v1/sandbox/payments/{pid}/confirm"),
            &a.publishable,
            json!({"card_number": "4242424242424242"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        s.get(&format!("/v1/payments/{pid}"), &a.server).await.json["status"],
        "canceled"
    );
}

async fn orders_refuse_overpayment_and_second_payment(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let shirt = s.product(&a.admin, "Shirt", 2500, "usd").await;
    let o = s
        .post("/v1/orders", &a.server, json!({"line_items": [{"product": shirt, "quantity": 2}, {"name": "Gift wrap", "unit_amount": 300}], "currency": "usd"}))
        .await;
    assert_eq!(o.status, StatusCode::CREATED, "{}", o.body);
    assert_eq!(
        o.json["amount_total"], 5300,
        "the server computes the total"
    );
    assert_eq!(o.json["status"], "open");
    let oid = o.json["id"].as_str().unwrap().to_owned();
    let over = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"order": oid, "amount": 5301, "method": "payment_intent"}),
        )
        .await;
    assert_eq!(over.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(over.error().1, "amount_too_large");
    // Two partial payments by saved card pay the order.
    let c = s
        .post("/v1/customers", &a.server, json!({"external_id": "u1"}))
        .await;
    let cid = c.json["id"].as_str().unwrap();
    s.post(
        &format!("/v1/customers/{cid}/payment_methods"),
        &a.server,
        json!({"payment_method": "pm_card_visa"}),
    )
    .await;
    let p1 = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"order": oid, "amount": 3000, "method": "card", "customer": cid}),
        )
        .await;
    assert_eq!(p1.json["status"], "succeeded", "{}", p1.body);
    let o = s.get(&format!("/v1/orders/{oid}"), &a.server).await.json;
    assert_eq!(
        (
            o["amount_paid"].as_i64(),
            o["amount_outstanding"].as_i64(),
            o["status"].as_str()
        ),
        (Some(3000), Some(2300), Some("open"))
    );
    let over = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"order": oid, "amount": 2301, "method": "card", "customer": cid}),
        )
        .await;
    assert_eq!(over.status, StatusCode::UNPROCESSABLE_ENTITY);
    let p2 = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"order": oid, "method": "card", "customer": cid}),
        )
        .await;
    assert_eq!(
        p2.json["amount"], 2300,
        "the default amount is what is left"
    );
    let o = s.get(&format!("/v1/orders/{oid}"), &a.server).await.json;
    assert_eq!(
        (o["status"].as_str(), o["amount_paid"].as_i64()),
        (Some("paid"), Some(5300))
    );
    let again = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"order": oid, "method": "card", "customer": cid}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error().1, "order_already_paid");
    // Below Stripe's minimum charge.
    let tiny = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 10, "currency": "usd", "method": "payment_intent"}),
        )
        .await;
    assert_eq!(tiny.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(tiny.error().1, "amount_too_small");
    assert_eq!(
        s.event_types(&a.admin, &format!("type=order.paid&order={oid}"))
            .await
            .len(),
        1
    );
}

async fn clients_cannot_set_prices_or_override_the_amount(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let shirt = s.product(&a.admin, "Shirt", 2500, "usd").await;
    let plan = s
        .post("/v1/products", &a.admin, json!({"name": "Plan", "unit_amount": 900, "currency": "usd", "recurring": {"interval": "month"}}))
        .await
        .json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let base = |line: Value, extra: Value| {
        let mut b = json!({"line_items": [line], "success_url": "https://a.example/s", "cancel_url": "https://a.example/c"});
        if let (Some(o), Some(e)) = (b.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        b
    };
    let cases = [
        (
            base(json!({"name": "Free shirt", "unit_amount": 1}), json!({})),
            "line_items[0].product",
        ),
        (
            base(json!({"product": shirt, "unit_amount": 1}), json!({})),
            "line_items[0]",
        ),
        (
            base(
                json!({"product": shirt}),
                json!({"provider_options": {"amount": 1}}),
            ),
            "provider_options[amount]",
        ),
        (
            base(
                json!({"product": shirt}),
                json!({"provider_options": {"line_items[0][price]": "price_x"}}),
            ),
            "provider_options[line_items[0][price]]",
        ),
        (
            base(
                json!({"product": shirt}),
                json!({"provider_options": {"metadata[pb_payment]": "x"}}),
            ),
            "provider_options[metadata[pb_payment]]",
        ),
        (
            base(
                json!({"product": shirt}),
                json!({"provider_options": {"bad key": "x"}}),
            ),
            "provider_options[bad key]",
        ),
        (
            base(
                json!({"product": shirt}),
                json!({"success_url": "javascript:alert(1)"}),
            ),
            "success_url",
        ),
        (base(json!({"product": plan}), json!({})), "line_items[0]"),
        (
            base(json!({"product": shirt, "quantity": 0}), json!({})),
            "line_items[0].quantity",
        ),
        (
            base(json!({"product": "product_nope"}), json!({})),
            "line_items[0]",
        ),
    ];
    for (body, param) in cases {
        let r = s
            .post("/v1/checkout/sessions", &a.publishable, body.clone())
            .await;
        assert!(r.status.is_client_error(), "{body}: {}", r.body);
        assert_eq!(r.error().2.as_deref(), Some(param), "{body}: {}", r.body);
    }
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM payments").await,
        0,
        "nothing was started"
    );
    // Allowed pass-through options reach the provider call (promotion codes are for
    // server keys: attacks_app covers the allowlist per role).
    let ok = s
        .checkout(
            &a.publishable,
            &shirt,
            1,
            json!({"provider_options": {"locale": "fr", "submit_type": "donate"}}),
        )
        .await;
    assert_eq!(ok["status"], "open");
    let r = s
        .post(
            "/v1/payments",
            &a.publishable,
            json!({"amount": 100, "currency": "usd", "method": "payment_intent"}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a publishable key cannot create payments"
    );
}

/// Eight saved-card charges of one order at once, without idempotency keys: the order
/// is charged once. A charge whose provider call has not answered yet holds the order's
/// amount, so the others are refused instead of charging the card again.
async fn concurrent_charges_of_one_order_take_it_once(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let cid = s.customer_with_card(&a.server, "racer").await;
    let o = s
        .post(
            "/v1/orders",
            &a.server,
            json!({"line_items": [{"name": "Seat", "unit_amount": 4_000}], "currency": "usd", "customer": cid}),
        )
        .await;
    assert_eq!(o.status, StatusCode::CREATED, "{}", o.body);
    let order = o.json["id"].as_str().unwrap().to_owned();
    let charges = (0..8).map(|_| {
        s.post(
            "/v1/payments",
            &a.server,
            json!({"order": order, "method": "card", "customer": cid}),
        )
    });
    let answers = futures::future::join_all(charges).await;
    let paid: Vec<_> = answers
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .collect();
    assert_eq!(
        paid.len(),
        1,
        "{:?}",
        answers.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    assert_eq!(paid[0].json["status"], "succeeded");
    for r in answers.iter().filter(|r| r.status != StatusCode::CREATED) {
        assert!(
            matches!(
                r.status,
                StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY
            ),
            "{}",
            r.body
        );
    }
    let o = s.get(&format!("/v1/orders/{order}"), &a.server).await.json;
    assert_eq!(
        (o["status"].as_str(), o["amount_paid"].as_i64()),
        (Some("paid"), Some(4_000))
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM payments WHERE lifecycle = 'succeeded'")
            .await,
        1
    );
}
