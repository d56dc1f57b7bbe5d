//! Subscriptions and disputes on the sandbox, plan-based subscriptions against
//! localstripe, and Connect against the recording stub.

use paybridge_testkit::LocalStripe;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{AppKeys, Backend, Server, TestDb};
use crate::stub::{fixture, stripe_error, Stub};

paybridge_testkit::on_both!(
    a_subscription_lives_by_checkout_renewals_and_cancel,
    a_subscription_starts_with_a_saved_card_and_cancels_at_period_end,
    disputes_open_and_close,
    plan_subscriptions_against_localstripe,
    connect_requests_carry_stripes_parameters,
);

async fn plan(s: &Server, a: &AppKeys) -> String {
    let r = s
        .post("/v1/products", &a.admin, json!({"name": "Pro", "unit_amount": 1_500, "currency": "usd", "recurring": {"interval": "month"}}))
        .await;
    r.json["id"].as_str().unwrap().to_owned()
}

async fn a_subscription_lives_by_checkout_renewals_and_cancel(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let pro = plan(&s, &a).await;
    let c = s
        .post("/v1/customers", &a.server, json!({"external_id": "sub-1"}))
        .await;
    let cid = c.json["id"].as_str().unwrap().to_owned();
    // Start by checkout, in the browser, as the customer the app's server vouches for.
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
            &pro,
            1,
            json!({"mode": "subscription", "customer": cid,
                   "customer_session_secret": session.json["client_secret"]}),
        )
        .await;
    assert_eq!(cs["mode"], "subscription");
    let r = s
        .complete_checkout(&a.publishable, &cs, "4242424242424242")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let subs = s
        .until(
            &format!("/v1/subscriptions?customer={cid}"),
            &a.server,
            |l| l["data"][0]["status"] == "active",
        )
        .await;
    let sub = subs["data"][0].clone();
    let sid = sub["id"].as_str().unwrap().to_owned();
    assert!(sub["provider_subscription_id"]
        .as_str()
        .unwrap()
        .starts_with("sub_"));
    assert!(
        sub["current_period_end"].as_i64().unwrap() > sub["current_period_start"].as_i64().unwrap()
    );
    // The first charge is the checkout's order; it is paid and knows its subscription.
    let order = s
        .until(
            &format!("/v1/orders/{}", cs["order"].as_str().unwrap()),
            &a.server,
            |o| o["subscription"] == sid.as_str() && o["status"] == "paid",
        )
        .await;
    assert_eq!(
        (order["status"].as_str(), order["amount_paid"].as_i64()),
        (Some("paid"), Some(1_500))
    );
    assert_eq!(
        s.event_types(&a.admin, "type=subscription.created")
            .await
            .len(),
        1
    );

    // A renewal: a new order, paid.
    let r = s
        .post(
            &format!("/v1/sandbox/subscriptions/{sid}/renew"),
            &a.server,
            json!({}),
        )
        .await;
    assert_eq!(r.json["provider_status"], "active", "{}", r.body);
    let orders = s
        .until(&format!("/v1/orders?customer={cid}"), &a.server, |l| {
            l["data"].as_array().is_some_and(|d| d.len() == 2)
        })
        .await;
    let renewal = &orders["data"][0];
    assert_eq!(
        (renewal["status"].as_str(), renewal["amount_paid"].as_i64()),
        (Some("paid"), Some(1_500))
    );
    assert_eq!(renewal["subscription"], sid.as_str());
    let paid = s
        .until(
            "/v1/events?type=subscription.payment_succeeded",
            &a.admin,
            |l| l["data"].as_array().is_some_and(|d| d.len() == 2),
        )
        .await;
    assert_eq!(paid["data"].as_array().unwrap().len(), 2);
    // A failed renewal: past due, and an order with a failed payment.
    let r = s
        .post(
            &format!("/v1/sandbox/subscriptions/{sid}/renew"),
            &a.server,
            json!({"succeed": false}),
        )
        .await;
    assert_eq!(r.json["provider_status"], "past_due");
    s.until(&format!("/v1/subscriptions/{sid}"), &a.server, |x| {
        x["status"] == "past_due"
    })
    .await;
    let failed = s
        .until(
            &format!("/v1/payments?customer={cid}&status=failed"),
            &a.server,
            |l| l["data"].as_array().is_some_and(|d| d.len() == 1),
        )
        .await;
    assert_eq!(failed["data"][0]["method"], "subscription");
    s.until(
        "/v1/events?type=subscription.payment_failed",
        &a.admin,
        |l| l["data"].as_array().is_some_and(|d| d.len() == 1),
    )
    .await;
    // The next renewal pays again: active.
    s.post(
        &format!("/v1/sandbox/subscriptions/{sid}/renew"),
        &a.server,
        json!({"succeed": true}),
    )
    .await;
    s.until(&format!("/v1/subscriptions/{sid}"), &a.server, |x| {
        x["status"] == "active"
    })
    .await;
    // Cancel now.
    let c = s
        .post(
            &format!("/v1/subscriptions/{sid}/cancel"),
            &a.server,
            json!({}),
        )
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    assert_eq!(c.json["status"], "canceled");
    assert!(c.json["canceled_at"].is_i64());
    let r = s
        .post(
            &format!("/v1/sandbox/subscriptions/{sid}/renew"),
            &a.server,
            json!({}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "a canceled subscription is not renewed"
    );
    s.until("/v1/events?type=subscription.canceled", &a.admin, |l| {
        l["data"].as_array().is_some_and(|d| d.len() == 1)
    })
    .await;
    // Late events of the subscription never bring it back.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        s.get(&format!("/v1/subscriptions/{sid}"), &a.server)
            .await
            .json["status"],
        "canceled"
    );
    // Every sandbox event was processed (none left waiting).
    let pe = s.get("/v1/provider_events?limit=100", &a.admin).await;
    let stuck: Vec<&Value> = pe.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "pending" || e["outcome"] == "failed")
        .collect();
    assert!(stuck.is_empty(), "{stuck:?}");
}

async fn a_subscription_starts_with_a_saved_card_and_cancels_at_period_end(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let pro = plan(&s, &a).await;
    let c = s
        .post("/v1/customers", &a.server, json!({"external_id": "sub-2"}))
        .await;
    let cid = c.json["id"].as_str().unwrap().to_owned();
    let no_card = s
        .post(
            "/v1/subscriptions",
            &a.server,
            json!({"customer": cid, "product": pro}),
        )
        .await;
    assert_eq!(no_card.status, StatusCode::UNPROCESSABLE_ENTITY);
    s.post(
        &format!("/v1/customers/{cid}/payment_methods"),
        &a.server,
        json!({"payment_method": "pm_card_visa"}),
    )
    .await;
    let one_time = s.product(&a.admin, "Mug", 900, "usd").await;
    let r = s
        .post(
            "/v1/subscriptions",
            &a.server,
            json!({"customer": cid, "product": one_time}),
        )
        .await;
    assert_eq!(r.error().1, "product_not_recurring");
    // Each period's charge is held to a charge's limits, as a checkout's total is.
    let dear = s
        .post("/v1/products", &a.admin, json!({"name": "Dear", "unit_amount": 99_999_999, "currency": "usd", "recurring": {"interval": "month"}}))
        .await;
    let cheap = s
        .post("/v1/products", &a.admin, json!({"name": "Cheap", "unit_amount": 1, "currency": "usd", "recurring": {"interval": "month"}}))
        .await;
    for (product, quantity, code) in [
        (&dear, 10_000, "amount_too_large"),
        (&cheap, 1, "amount_too_small"),
    ] {
        let r = s
            .post(
                "/v1/subscriptions",
                &a.server,
                json!({"customer": cid, "product": product.json["id"], "quantity": quantity}),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert_eq!(r.error().1, code, "{}", r.body);
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM subscriptions").await, 0);
    let r = s
        .post(
            "/v1/subscriptions",
            &a.server,
            json!({"customer": cid, "product": pro, "quantity": 2}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json["status"], "active", "the provider's answer");
    let sid = r.json["id"].as_str().unwrap().to_owned();
    // Its first invoice makes an order of 2 × 15.00.
    let orders = s
        .until(&format!("/v1/orders?customer={cid}"), &a.server, |l| {
            l["data"][0]["status"] == "paid"
        })
        .await;
    assert_eq!(orders["data"][0]["amount_total"], 3_000);
    let r = s
        .post(
            &format!("/v1/subscriptions/{sid}/cancel"),
            &a.server,
            json!({"at_period_end": true}),
        )
        .await;
    assert_eq!(
        (
            r.json["status"].as_str(),
            r.json["cancel_at_period_end"].as_bool()
        ),
        (Some("active"), Some(true))
    );
    s.post(
        &format!("/v1/sandbox/subscriptions/{sid}/renew"),
        &a.server,
        json!({}),
    )
    .await;
    let sub = s
        .until(&format!("/v1/subscriptions/{sid}"), &a.server, |x| {
            x["status"] == "canceled"
        })
        .await;
    assert_eq!(sub["cancel_at_period_end"], true);
    assert_eq!(
        s.get(&format!("/v1/orders?customer={cid}"), &a.server)
            .await
            .json["data"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "no charge after the end"
    );
    assert_eq!(
        s.post(
            "/v1/subscriptions",
            &a.publishable,
            json!({"customer": cid, "product": pro})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
}

async fn disputes_open_and_close(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let cid = s.customer_with_card(&a.server, "d-1").await;
    for outcome in ["won", "lost"] {
        let p = s
            .post(
                "/v1/payments",
                &a.server,
                json!({"amount": 4_000, "currency": "usd", "method": "card", "customer": cid}),
            )
            .await;
        let pid = p.json["id"].as_str().unwrap().to_owned();
        let r = s
            .post(
                &format!("/v1/sandbox/payments/{pid}/dispute"),
                &a.server,
                json!({}),
            )
            .await;
        assert_eq!(r.json["provider_status"], "needs_response", "{}", r.body);
        let p = s
            .until(&format!("/v1/payments/{pid}"), &a.server, |p| {
                p["status"] == "disputed"
            })
            .await;
        assert_eq!(p["dispute"], "open");
        assert_eq!(
            s.event_types(&a.admin, &format!("payment={pid}&type=payment.disputed"))
                .await
                .len(),
            1
        );
        let again = s
            .post(
                &format!("/v1/sandbox/payments/{pid}/dispute"),
                &a.server,
                json!({}),
            )
            .await;
        assert_eq!(again.status, StatusCode::CONFLICT);
        s.post(
            &format!("/v1/sandbox/payments/{pid}/dispute"),
            &a.server,
            json!({"close": outcome}),
        )
        .await;
        let p = s
            .until(&format!("/v1/payments/{pid}"), &a.server, |p| {
                p["dispute"] == outcome
            })
            .await;
        let expected = if outcome == "won" {
            "succeeded"
        } else {
            "disputed"
        };
        assert_eq!(
            p["status"], expected,
            "a won dispute goes back; a lost one stays"
        );
    }
}

async fn plan_subscriptions_against_localstripe(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let ls = LocalStripe::start().await;
    let s = Server::start_with(&db, &[("PAYBRIDGE_STRIPE_API_BASE", &ls.base)]).await;
    let a = s.app("test").await;
    s.put("/v1/payment_config", &a.admin, json!({"provider": "stripe", "provider_public_key": "pk_test_x", "provider_secret_key": "sk_test_ls"}))
        .await;
    // localstripe has plans, not prices: the product stands for a plan.
    let http = reqwest::Client::new();
    let product: Value = http
        .post(format!("{}/v1/products", ls.base))
        .bearer_auth("sk_test_ls")
        .form(&[("name", "Pro"), ("type", "service")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let plan: Value = http
        .post(format!("{}/v1/plans", ls.base))
        .bearer_auth("sk_test_ls")
        .form(&[
            ("id", "pro-monthly"),
            ("amount", "2000"),
            ("currency", "usd"),
            ("interval", "month"),
            ("product", product["id"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plan["id"], "pro-monthly", "{plan}");
    let p = s
        .post(
            "/v1/products",
            &a.admin,
            json!({"name": "Pro", "unit_amount": 2_000, "currency": "usd", "recurring": {"interval": "month"}, "provider_price_id": "pro-monthly"}),
        )
        .await;
    let pro = p.json["id"].as_str().unwrap().to_owned();
    let c = s
        .post("/v1/customers", &a.server, json!({"external_id": "ls-sub"}))
        .await;
    let cid = c.json["id"].as_str().unwrap().to_owned();
    s.post(
        &format!("/v1/customers/{cid}/payment_methods"),
        &a.server,
        json!({"payment_method": "pm_card_visa"}),
    )
    .await;
    let r = s
        .post(
            "/v1/subscriptions",
            &a.server,
            json!({"customer": cid, "product": pro}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json["status"], "active");
    assert!(r.json["provider_subscription_id"]
        .as_str()
        .unwrap()
        .starts_with("sub_"));
    assert!(r.json["current_period_end"].is_i64());
    let sid = r.json["id"].as_str().unwrap().to_owned();
    let r = s
        .post(
            &format!("/v1/subscriptions/{sid}/cancel"),
            &a.server,
            json!({"at_period_end": true}),
        )
        .await;
    assert_eq!(
        (
            r.json["status"].as_str(),
            r.json["cancel_at_period_end"].as_bool()
        ),
        (Some("active"), Some(true)),
        "{}",
        r.body
    );
    let r = s
        .post(
            &format!("/v1/subscriptions/{sid}/cancel"),
            &a.server,
            json!({}),
        )
        .await;
    assert_eq!(r.json["status"], "canceled", "{}", r.body);
}

async fn connect_requests_carry_stripes_parameters(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let stub = Stub::start(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/v1/accounts") => (200, fixture("account", json!({"id": "acct_stub1", "email": req.form_get("email"), "country": req.form_get("country")}))),
        ("GET", "/v1/accounts/acct_stub1") => (200, fixture("account", json!({"id": "acct_stub1", "charges_enabled": true}))),
        ("DELETE", "/v1/accounts/acct_stub1") => (200, json!({"id": "acct_stub1", "object": "account", "deleted": true})),
        ("GET", "/v1/accounts/acct_stub1/persons") => (200, json!({"object": "list", "has_more": false, "data": [fixture("person", json!({"id": "person_1"}))]})),
        ("POST", "/v1/transfers") => (200, fixture("transfer", json!({"id": "tr_stub1", "amount": 700, "currency": "usd", "destination": "acct_stub1"}))),
        ("GET", "/v1/balance_transactions") => (200, json!({"object": "list", "has_more": false, "data": [fixture("balance_transaction", json!({"id": "txn_1"}))]})),
        ("GET", "/v1/webhook_endpoints") => (200, json!({"object": "list", "has_more": false, "data": [fixture("webhook_endpoint", json!({"id": "we_1"}))]})),
        ("POST", "/v1/payment_intents") => (200, fixture("payment_intent", json!({"id": "pi_dest", "amount": 5_000, "currency": "usd", "status": "requires_payment_method",
            "last_payment_error": null, "latest_charge": null, "amount_received": 0, "metadata": {}}))),
        _ => (404, stripe_error("invalid_request_error", "resource_missing", "none")),
    })
    .await;
    let s = Server::start_with(&db, &[("PAYBRIDGE_STRIPE_API_BASE", &stub.base)]).await;
    let a = s.app("test").await;
    s.put("/v1/payment_config", &a.admin, json!({"provider": "stripe", "provider_public_key": "pk_test_x", "provider_secret_key": "sk_test_connect"}))
        .await;
    let acct = s
        .post(
            "/v1/connect/accounts",
            &a.admin,
            json!({"email": "seller@example.com", "external_id": "seller-9", "country": "fr"}),
        )
        .await;
    assert_eq!(acct.status, StatusCode::CREATED, "{}", acct.body);
    let aid = acct.json["id"].as_str().unwrap().to_owned();
    let call = &stub.calls("POST", "/v1/accounts")[0];
    let mut form = call.form.clone();
    form.sort();
    assert_eq!(
        form,
        vec![
            (
                "capabilities[card_payments][requested]".to_string(),
                "true".to_string()
            ),
            ("capabilities[transfers][requested]".into(), "true".into()),
            ("country".into(), "FR".into()),
            ("email".into(), "seller@example.com".into()),
            ("metadata[pb_account]".into(), aid.clone()),
            ("metadata[pb_app]".into(), a.id.clone()),
            ("metadata[pb_external_id]".into(), "seller-9".into()),
            ("type".into(), "express".into()),
        ]
    );
    assert_eq!(
        call.header("idempotency-key"),
        Some(format!("pb_{aid}_create").as_str())
    );
    let got = s
        .get(&format!("/v1/connect/accounts/{aid}"), &a.server)
        .await;
    assert_eq!(got.json["provider"]["charges_enabled"], true);
    let persons = s
        .get(&format!("/v1/connect/accounts/{aid}/persons"), &a.server)
        .await;
    assert_eq!(persons.json["data"][0]["id"], "person_1");
    assert_eq!(
        stub.calls("GET", "/v1/accounts/acct_stub1/persons")[0].query,
        vec![("limit".to_string(), "100".to_string())]
    );

    let t = s.post("/v1/connect/transfers", &a.admin, json!({"destination": aid, "amount": 700, "currency": "usd", "metadata": {"order": "o-1"}})).await;
    assert_eq!(
        (t.status, t.json["status"].as_str()),
        (StatusCode::CREATED, Some("succeeded")),
        "{}",
        t.body
    );
    let call = &stub.calls("POST", "/v1/transfers")[0];
    assert_eq!(
        (
            call.form_get("amount"),
            call.form_get("currency"),
            call.form_get("destination")
        ),
        (Some("700"), Some("usd"), Some("acct_stub1"))
    );
    assert_eq!(call.form_get("metadata[order]"), Some("o-1"));
    assert_eq!(
        call.header("idempotency-key"),
        Some(format!("pb_{}_create", t.json["id"].as_str().unwrap()).as_str())
    );

    let tx = s
        .get(
            &format!("/v1/connect/payouts/po_123/transactions?account={aid}"),
            &a.server,
        )
        .await;
    assert_eq!(tx.json["data"][0]["id"], "txn_1", "{}", tx.body);
    let call = &stub.calls("GET", "/v1/balance_transactions")[0];
    assert_eq!(
        call.header("stripe-account"),
        Some("acct_stub1"),
        "a payout's transactions are read as the connected account"
    );
    assert!(call
        .query
        .contains(&("payout".to_string(), "po_123".to_string())));
    let we = s.get("/v1/provider/webhook_endpoints", &a.admin).await;
    assert_eq!(we.json["data"][0]["id"], "we_1");
    assert_eq!(
        s.get("/v1/provider/webhook_endpoints", &a.server)
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // A destination charge: the fee and the destination reach the intent.
    let p = s
        .post("/v1/payments", &a.server, json!({"amount": 5_000, "currency": "usd", "method": "payment_intent", "application_fee_amount": 500, "transfer_destination": "acct_stub1"}))
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    let call = &stub.calls("POST", "/v1/payment_intents")[0];
    assert_eq!(
        (
            call.form_get("application_fee_amount"),
            call.form_get("transfer_data[destination]")
        ),
        (Some("500"), Some("acct_stub1"))
    );
    // Our own account id works too, as for transfers: it is sent as the provider's.
    let p = s
        .post("/v1/payments", &a.server, json!({"amount": 5_000, "currency": "usd", "method": "payment_intent", "transfer_destination": aid}))
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    let call = &stub.calls("POST", "/v1/payment_intents")[1];
    assert_eq!(
        call.form_get("transfer_data[destination]"),
        Some("acct_stub1")
    );
    let bad = s.post("/v1/payments", &a.server, json!({"amount": 5_000, "currency": "usd", "method": "payment_intent", "application_fee_amount": 6_000})).await;
    assert_eq!(bad.error().2.as_deref(), Some("application_fee_amount"));

    let del = s
        .delete(&format!("/v1/connect/accounts/{aid}"), &a.admin)
        .await;
    assert_eq!(del.json["deleted"], true);
    assert_eq!(
        s.get(&format!("/v1/connect/accounts/{aid}"), &a.server)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(stub.calls("DELETE", "/v1/accounts/acct_stub1").len(), 1);
    let bad = s
        .post(
            "/v1/connect/transfers",
            &a.admin,
            json!({"destination": "account_nope", "amount": 1, "currency": "usd"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::NOT_FOUND);
}
