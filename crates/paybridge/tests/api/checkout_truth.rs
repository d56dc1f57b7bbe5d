//! Every view of a checkout tells the same, current truth (issue 15): its amount and
//! currency on read and in its events, its status in the sandbox helper's answer; a
//! number that is not a card is refused before anything is recorded; a checkout can be
//! ended through the API (the SDK's return page does it on cancel); and
//! `{CHECKOUT_ID}` in its URLs names it.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{Backend, Server, TestDb};

paybridge_testkit::on_both!(
    every_view_of_a_checkout_tells_its_amount_and_current_status,
    a_number_that_is_not_a_card_is_refused_and_nothing_is_recorded,
    a_checkout_is_ended_through_the_api,
);

async fn every_view_of_a_checkout_tells_its_amount_and_current_status(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    // The sandbox's events arrive late, so the helper's answer cannot lean on them.
    let s = Server::start_with(&db, &[("PAYBRIDGE_SANDBOX_WEBHOOK_DELAY_MS", "3000")]).await;
    let a = s.sandbox_app().await;
    let shirt = s.product(&a.admin, "Shirt", 2500, "usd").await;
    let cs = s
        .checkout(
            &a.publishable,
            &shirt,
            2,
            json!({"cancel_url": "https://shop.example/cart?checkout={CHECKOUT_ID}"}),
        )
        .await;
    let id = cs["id"].as_str().unwrap();
    assert_eq!(cs["amount_total"], 5000);
    assert_eq!(
        cs["cancel_url"],
        format!("https://shop.example/cart?checkout={id}"),
        "{{CHECKOUT_ID}} names the checkout"
    );
    for key in [&a.server, &a.admin, &a.publishable] {
        let r = s.get(&format!("/v1/checkout/sessions/{id}"), key).await;
        assert_eq!(r.json["amount_total"], 5000, "{}", r.body);
        assert_eq!(r.json["currency"], "usd", "{}", r.body);
    }
    let done = s
        .post(
            &format!("/v1/sandbox/checkout_sessions/{id}/complete"),
            &a.server,
            json!({"card_number": "4242424242424242"}),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.json["provider_status"], "complete");
    assert_eq!(done.json["checkout"]["status"], "complete", "{}", done.body);
    assert_eq!(done.json["checkout"]["amount_total"], 5000);
    let read = s
        .get(&format!("/v1/checkout/sessions/{id}"), &a.server)
        .await;
    assert_eq!(read.json["status"], "complete", "{}", read.body);
    // The event says what the checkout charged.
    let events = s
        .until("/v1/events?type=checkout.completed", &a.admin, |e| {
            e["data"].as_array().is_some_and(|d| !d.is_empty())
        })
        .await;
    let object = &events["data"][0]["data"]["object"];
    assert_eq!(object["amount_total"], 5000, "{object}");
    assert_eq!(object["currency"], "usd");
    // When the late webhook lands, nothing is told twice.
    let order_path = format!("/v1/orders/{}", cs["order"].as_str().unwrap());
    s.until(&order_path, &a.admin, |o| {
        o["payments"][0]["provider"]["charge"].is_string()
    })
    .await;
    assert_eq!(
        s.event_types(&a.admin, "type=payment.succeeded")
            .await
            .len(),
        1
    );
    assert_eq!(
        s.event_types(&a.admin, "type=checkout.completed")
            .await
            .len(),
        1
    );
}

async fn a_number_that_is_not_a_card_is_refused_and_nothing_is_recorded(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let shirt = s.product(&a.admin, "Shirt", 2500, "usd").await;
    let cs = s.checkout(&a.publishable, &shirt, 1, json!({})).await;
    let id = cs["id"].as_str().unwrap();
    for typo in ["1234", "4242 4242 4242 4241", "4242-abcd"] {
        let r = s
            .post(
                &format!("/v1/sandbox/checkout_sessions/{id}/complete"),
                &a.publishable,
                json!({"card_number": typo}),
            )
            .await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{typo}: {}", r.body);
        assert_eq!(r.error().1, "incorrect_number", "{typo}");
    }
    // The hosted page says so next to the field, and sends nothing.
    let page = reqwest::Client::new()
        .post(cs["url"].as_str().unwrap())
        .form(&[
            ("email", "a@example.com"),
            ("card_number", "1234"),
            ("expiry", "12 / 34"),
            ("cvc", "123"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("id=card-error") && html.contains("Your card number is incomplete."),
        "{html}"
    );
    assert!(!html.contains("id=error"), "not a decline: {html}");
    // A real decline and a success follow, so the events had time to arrive.
    let r = s
        .post(
            &format!("/v1/sandbox/checkout_sessions/{id}/complete"),
            &a.publishable,
            json!({"card_number": "4242424242424242"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let pay = format!("/v1/payments/{}", cs["payment"].as_str().unwrap());
    let p = s
        .until(&pay, &a.server, |p| p["provider"]["charge"].is_string())
        .await;
    assert_eq!(p["status"], "succeeded");
    assert_eq!(p["failure"], Value::Null);
    assert!(s
        .event_types(&a.admin, "type=payment.failed")
        .await
        .is_empty());
    let pe = s.get("/v1/provider_events?limit=100", &a.admin).await;
    let kinds: Vec<&str> = pe.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"charge.succeeded") && !kinds.iter().any(|k| k.ends_with("failed")),
        "{kinds:?}"
    );
}

async fn a_checkout_is_ended_through_the_api(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let shirt = s.product(&a.admin, "Shirt", 2500, "usd").await;
    let cs = s.checkout(&a.publishable, &shirt, 1, json!({})).await;
    let id = cs["id"].as_str().unwrap();
    let expire = format!("/v1/checkout/sessions/{id}/expire");
    let r = s.post(&expire, &a.publishable, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json["status"], "expired", "{}", r.body);
    assert_eq!(r.json["url"], Value::Null, "an ended checkout has no page");
    let pay = format!("/v1/payments/{}", cs["payment"].as_str().unwrap());
    s.until(&pay, &a.server, |p| p["status"] == "expired").await;
    let ev = s
        .until("/v1/events?type=checkout.expired", &a.admin, |e| {
            e["data"].as_array().is_some_and(|d| !d.is_empty())
        })
        .await;
    let object = &ev["data"][0]["data"]["object"];
    assert_eq!(object["id"], id);
    assert_eq!(object["amount_total"], 2500, "{object}");
    assert!(
        ev["data"][0]["created"].as_i64().unwrap() < object["expires_at"].as_i64().unwrap(),
        "ended before its time: how the SDK tells a cancel from an expiry"
    );
    // Again: it stays ended, and says so.
    let again = s.post(&expire, &a.server, json!({})).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.json["status"], "expired");
    assert_eq!(
        s.event_types(&a.admin, "type=checkout.expired").await.len(),
        1
    );
    // A paid checkout cannot be ended.
    let cs2 = s.checkout(&a.publishable, &shirt, 1, json!({})).await;
    let id2 = cs2["id"].as_str().unwrap();
    let r = s
        .post(
            &format!("/v1/sandbox/checkout_sessions/{id2}/complete"),
            &a.publishable,
            json!({"card_number": "4242424242424242"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = s
        .post(
            &format!("/v1/checkout/sessions/{id2}/expire"),
            &a.publishable,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.error().1, "checkout_complete");
    // Another app's key finds nothing.
    let other = s.sandbox_app().await;
    let r = s.post(&expire, &other.publishable, json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
}
