//! Attacks on what an app's keys may do (issue 13, items 2, 4, 5, 6, 7 and 11), each as
//! an attacker would try it, on both databases, and what it gets now. The publishable
//! key is public, so "the attacker" is anyone holding it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{Backend, Receiver, Server, TestDb};
use crate::stub::{fixture, stripe_error, Stub};

paybridge_testkit::on_both!(
    provider_options_are_an_allowlist_per_role,
    a_publishable_key_pays_only_the_orders_it_was_given,
    naming_a_customer_from_the_browser_needs_a_customer_session,
    money_out_goes_with_the_refund_rule,
    one_apps_hanging_endpoints_do_not_delay_anothers_callbacks,
    a_live_apps_callbacks_reach_only_public_addresses,
    the_browsers_key_cannot_dispute_or_renew_on_the_sandbox,
);

const OK_URLS: (&str, &str) = ("https://shop.example/ok", "https://shop.example/cart");

fn checkout_body(product: &str, extra: Value) -> Value {
    let mut b = json!({
        "line_items": [{"product": product, "quantity": 1}],
        "success_url": OK_URLS.0,
        "cancel_url": OK_URLS.1,
    });
    b.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    b
}

/// Item 2: with only the publishable key, a subscription checkout passed a two-year
/// trial, a destination, a 99 % fee and saved-card filters to Stripe, and a payment
/// checkout `on_behalf_of`. Now: an allowlist per role, every refusal naming the option.
async fn provider_options_are_an_allowlist_per_role(b: Backend) {
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
    let sub = |opt: Value| {
        checkout_body(
            &plan,
            json!({"mode": "subscription", "provider_options": opt}),
        )
    };
    let pay = |opt: Value| checkout_body(&shirt, json!({"provider_options": opt}));
    let cases = [
        (
            sub(json!({"subscription_data[trial_period_days]": 730})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "parameter_reserved",
            "subscription_data[trial_period_days]",
        ),
        (
            sub(json!({"subscription_data[transfer_data][destination]": "acct_attacker"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "parameter_reserved",
            "subscription_data[transfer_data][destination]",
        ),
        (
            sub(json!({"subscription_data[application_fee_percent]": 99})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "parameter_reserved",
            "subscription_data[application_fee_percent]",
        ),
        (
            sub(json!({"saved_payment_method_options[allow_redisplay_filters][0]": "always"})),
            StatusCode::FORBIDDEN,
            "permission_denied",
            "saved_payment_method_options[allow_redisplay_filters][0]",
        ),
        (
            pay(json!({"payment_intent_data[on_behalf_of]": "acct_attacker"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "parameter_reserved",
            "payment_intent_data[on_behalf_of]",
        ),
        (
            pay(json!({"payment_intent_data[statement_descriptor]": "REFUND PENDING"})),
            StatusCode::FORBIDDEN,
            "permission_denied",
            "payment_intent_data[statement_descriptor]",
        ),
        (
            pay(json!({"allow_promotion_codes": true})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "parameter_reserved",
            "allow_promotion_codes",
        ),
        (
            pay(json!({"discounts[0][coupon]": "FREE"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "parameter_reserved",
            "discounts[0][coupon]",
        ),
        (
            pay(json!({"made_up_option": "x"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "parameter_unknown",
            "made_up_option",
        ),
    ];
    for (body, status, code, option) in &cases {
        let r = s
            .post("/v1/checkout/sessions", &a.publishable, body.clone())
            .await;
        assert_eq!(r.status, *status, "{option}: {}", r.body);
        let (_, got_code, param) = r.error();
        assert_eq!(got_code, *code, "{option}: {}", r.body);
        assert_eq!(
            param,
            Some(format!("provider_options[{option}]")),
            "{}",
            r.body
        );
    }
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM payments").await,
        0,
        "nothing was started by a refused checkout"
    );
    // The page's presentation and collection are the browser's to set.
    let ok = s
        .post(
            "/v1/checkout/sessions",
            &a.publishable,
            pay(json!({"locale": "fr", "submit_type": "donate",
                       "custom_text[submit][message]": "Merci !",
                       "shipping_address_collection[allowed_countries][0]": "FR",
                       "phone_number_collection[enabled]": true,
                       "consent_collection[terms_of_service]": "required"})),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    // The app's server may set its statement descriptor; nobody may pass fees, trials or
    // promotion codes (they would charge less than the order's total).
    let r = s
        .post(
            "/v1/checkout/sessions",
            &a.server,
            pay(json!({"payment_intent_data[statement_descriptor]": "SHOP"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = s
        .post(
            "/v1/checkout/sessions",
            &a.admin,
            pay(json!({"allow_promotion_codes": true})),
        )
        .await;
    assert_eq!(r.error().1, "parameter_reserved", "{}", r.body);
    let r = s
        .post(
            "/v1/checkout/sessions",
            &a.admin,
            sub(json!({"subscription_data[trial_period_days]": 730})),
        )
        .await;
    assert_eq!(r.error().1, "parameter_reserved", "{}", r.body);
    // A payment intent takes its own names, and none of the money-moving ones.
    let r = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 500, "currency": "usd", "method": "payment_intent",
              "provider_options": {"on_behalf_of": "acct_attacker"}}),
        )
        .await;
    assert_eq!(
        r.error().2.as_deref(),
        Some("provider_options[on_behalf_of]"),
        "{}",
        r.body
    );
    // The reference lists what the server enforces.
    let doc = s.openapi().await;
    let described = doc["components"]["schemas"]["CreateCheckout"]["properties"]
        ["provider_options"]["description"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for name in [
        "`locale`",
        "`allow_promotion_codes`",
        "`custom_text[…]`",
        "`subscription_data[trial_period_days]`",
        "`payment_intent_data[on_behalf_of]`",
    ] {
        assert!(described.contains(name), "{name} not in: {described}");
    }
}

/// Item 4: `POST /v1/checkout/sessions {"order"}` with only the publishable key
/// returned the order's client secret (its customer, metadata and lines) and expired
/// the customer's own open checkout.
async fn a_publishable_key_pays_only_the_orders_it_was_given(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let shirt = s.product(&a.admin, "Shirt", 2500, "usd").await;
    let cid = s.customer_with_card(&a.server, "victim").await;
    let order = s
        .post("/v1/orders", &a.server, json!({"customer": cid, "line_items": [{"product": shirt, "quantity": 1}], "metadata": {"address": "1 Main St"}}))
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
    let (oid, secret) = (
        order.json["id"].as_str().unwrap().to_owned(),
        order.json["client_secret"].as_str().unwrap().to_owned(),
    );
    // The secret opens the order, so the database must not hold it: it is derived from
    // the master key when asked for (and the server key gets the same one again, below).
    assert!(
        !db.all_stored_text()
            .await
            .contains(&secret[secret.len() - 16..]),
        "the order's client secret is stored in plain text"
    );
    // The customer's own page, opened with the secret they were given.
    let theirs = s
        .post("/v1/checkout/sessions", &a.publishable, json!({"order": oid, "client_secret": secret, "success_url": OK_URLS.0, "cancel_url": OK_URLS.1}))
        .await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.body);
    let their_checkout = theirs.json["id"].as_str().unwrap().to_owned();

    // The attacker, without the secret or with a wrong one, gets what an order that does
    // not exist gets, and nothing changes.
    let nowhere = s
        .post("/v1/checkout/sessions", &a.publishable, json!({"order": "order_01aaaaaaaaaaaaaaaaaaaaaaaa", "client_secret": "x", "success_url": OK_URLS.0, "cancel_url": OK_URLS.1}))
        .await;
    for attempt in [
        json!({"order": oid, "success_url": OK_URLS.0, "cancel_url": OK_URLS.1}),
        json!({"order": oid, "client_secret": format!("{oid}_secret_guess"), "success_url": OK_URLS.0, "cancel_url": OK_URLS.1}),
    ] {
        let r = s
            .post("/v1/checkout/sessions", &a.publishable, attempt)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
        assert_eq!(
            r.json, nowhere.json,
            "no oracle: the same answer as a missing order"
        );
        assert!(!r.body.contains(&secret));
    }
    assert_eq!(
        db.scalar(&format!(
            "SELECT COUNT(*) FROM payments WHERE order_id = '{oid}'"
        ))
        .await,
        1,
        "no payment was started for the attacker"
    );
    let c = s
        .get(
            &format!("/v1/checkout/sessions/{their_checkout}"),
            &a.server,
        )
        .await;
    assert_eq!(
        c.json["status"], "open",
        "the customer's page was not expired"
    );

    // A publishable key reads a checkout as its paying page needs it, and no more.
    let public = s
        .get(
            &format!("/v1/checkout/sessions/{their_checkout}"),
            &a.publishable,
        )
        .await;
    assert_eq!(public.status, StatusCode::OK, "{}", public.body);
    let mut keys: Vec<&str> = public
        .json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "amount_total",
            "currency",
            "expires_at",
            "id",
            "mode",
            "object",
            "status",
            "url"
        ],
        "{}",
        public.body
    );
    assert_eq!(public.json["amount_total"], 2500);
    for hidden in [cid.as_str(), oid.as_str(), secret.as_str(), "shop.example"] {
        assert!(
            !public.body.contains(hidden),
            "{hidden} shown: {}",
            public.body
        );
    }
    // Server keys still see all of it.
    assert_eq!(c.json["customer"], cid.as_str());
    assert_eq!(c.json["order"], oid.as_str());
    // The app's server asks for a new page of the same order: it gets the same secret.
    let again = s
        .post(
            "/v1/checkout/sessions",
            &a.server,
            json!({"order": oid, "success_url": OK_URLS.0, "cancel_url": OK_URLS.1}),
        )
        .await;
    assert_eq!(
        again.json["client_secret"],
        secret.as_str(),
        "{}",
        again.body
    );
}

/// Item 5: a checkout naming an existing customer with `save_card`, paid with another
/// card, replaced the victim's default card. Now the browser needs a customer session
/// that the app's server minted for that customer.
async fn naming_a_customer_from_the_browser_needs_a_customer_session(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let other = s.sandbox_app().await;
    let shirt = s.product(&a.admin, "Shirt", 2500, "usd").await;
    let victim = s.customer_with_card(&a.server, "victim").await;
    let default_before = s
        .get(&format!("/v1/customers/{victim}"), &a.server)
        .await
        .json["default_payment_method"]
        .clone();

    for (extra, param) in [
        (json!({"customer": victim, "save_card": true}), "customer"),
        (json!({"customer": victim}), "customer"),
    ] {
        let r = s
            .post(
                "/v1/checkout/sessions",
                &a.publishable,
                checkout_body(&shirt, extra),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        assert_eq!(r.error().1, "customer_session_required");
        assert_eq!(r.error().2.as_deref(), Some(param));
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM payments").await, 0);

    // The app's server mints a short-lived session; a publishable key cannot.
    let path = format!("/v1/customers/{victim}/sessions");
    assert_eq!(
        s.post(&path, &a.publishable, json!({})).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.post(&path, &a.server, json!({"expires_in": 86_400}))
            .await
            .error()
            .2
            .as_deref(),
        Some("expires_in")
    );
    let minted = s.post(&path, &a.server, json!({})).await;
    assert_eq!(minted.status, StatusCode::CREATED, "{}", minted.body);
    let secret = minted.json["client_secret"].as_str().unwrap().to_owned();
    let ttl =
        minted.json["expires_at"].as_i64().unwrap() - minted.json["created"].as_i64().unwrap();
    assert_eq!(ttl, 1800, "30 minutes by default");
    assert!(
        !db.all_stored_text().await.contains(&secret),
        "stored hashed only"
    );

    // With it, the browser checks out as that customer and may save a card; it names
    // the customer itself.
    let ok = s
        .post(
            "/v1/checkout/sessions",
            &a.publishable,
            checkout_body(
                &shirt,
                json!({"customer_session_secret": secret, "save_card": true}),
            ),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    assert_eq!(ok.json["customer"], victim.as_str());
    // Not for another customer, not in another app, not once expired.
    let bystander = s
        .post(
            "/v1/customers",
            &a.server,
            json!({"external_id": "bystander"}),
        )
        .await
        .json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .post("/v1/checkout/sessions", &a.publishable, checkout_body(&shirt, json!({"customer": bystander, "customer_session_secret": secret, "save_card": true})))
        .await;
    assert_eq!(
        (r.status, r.error().1.as_str()),
        (StatusCode::FORBIDDEN, "customer_mismatch"),
        "{}",
        r.body
    );
    let other_shirt = s.product(&other.admin, "Shirt", 2500, "usd").await;
    let r = s
        .post(
            "/v1/checkout/sessions",
            &other.publishable,
            checkout_body(&other_shirt, json!({"customer_session_secret": secret})),
        )
        .await;
    assert_eq!(
        (r.status, r.error().1.as_str()),
        (StatusCode::FORBIDDEN, "customer_session_invalid"),
        "{}",
        r.body
    );
    // An hour later (the clock moved by hand: the session's expiry, as stored).
    db.execute("UPDATE customer_sessions SET expires_at = expires_at - 3600")
        .await;
    let r = s
        .post(
            "/v1/checkout/sessions",
            &a.publishable,
            checkout_body(&shirt, json!({"customer_session_secret": secret})),
        )
        .await;
    assert_eq!(
        (r.status, r.error().1.as_str()),
        (StatusCode::FORBIDDEN, "customer_session_invalid"),
        "{}",
        r.body
    );
    // A new or anonymous customer needs nothing.
    let r = s
        .post(
            "/v1/checkout/sessions",
            &a.publishable,
            checkout_body(&shirt, json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // Saving a card onto an order's customer from the browser needs the session too.
    let order = s
        .post(
            "/v1/orders",
            &a.server,
            json!({"customer": victim, "line_items": [{"product": shirt, "quantity": 1}]}),
        )
        .await;
    let r = s
        .post("/v1/checkout/sessions", &a.publishable, json!({"order": order.json["id"], "client_secret": order.json["client_secret"], "save_card": true, "success_url": OK_URLS.0, "cancel_url": OK_URLS.1}))
        .await;
    assert_eq!(
        (r.status, r.error().2.as_deref()),
        (StatusCode::FORBIDDEN, Some("save_card")),
        "{}",
        r.body
    );
    let default_after = s
        .get(&format!("/v1/customers/{victim}"), &a.server)
        .await
        .json["default_payment_method"]
        .clone();
    assert_eq!(
        default_before, default_after,
        "the victim's default card is theirs"
    );
}

/// Item 6: a plain server key made a 999,999.99 transfer and deleted a connected
/// account, while it could not refund. Now money-out needs admin or a grant, and a
/// transfer goes only to one of this app's connected accounts.
async fn money_out_goes_with_the_refund_rule(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let other = s.sandbox_app().await;
    let seller = json!({"email": "seller@example.com", "country": "us"});
    let r = s
        .post("/v1/connect/accounts", &a.server, seller.clone())
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let acct = s
        .post("/v1/connect/accounts", &a.admin, seller.clone())
        .await;
    assert_eq!(acct.status, StatusCode::CREATED, "{}", acct.body);
    let (aid, provider_id) = (
        acct.json["id"].as_str().unwrap().to_owned(),
        acct.json["provider_account_id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let theirs = s.post("/v1/connect/accounts", &other.admin, seller).await;
    let their_provider_id = theirs.json["provider_account_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let transfer =
        |dest: &str, amount: i64| json!({"destination": dest, "amount": amount, "currency": "usd"});
    let r = s
        .post(
            "/v1/connect/transfers",
            &a.server,
            transfer(&aid, 99_999_999),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = s
        .delete(&format!("/v1/connect/accounts/{aid}"), &a.server)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM transfers").await, 0);

    // A server key the admin granted `transfers:write` may pay the app's own sellers,
    // and only them.
    let key = s
        .post(
            &format!("/v1/apps/{}/keys", a.id),
            &a.admin,
            json!({"role": "server", "permissions": ["transfers:write"]}),
        )
        .await;
    assert_eq!(key.status, StatusCode::CREATED, "{}", key.body);
    let granted = key.json["secret"].as_str().unwrap().to_owned();
    for dest in [aid.as_str(), provider_id.as_str()] {
        let r = s
            .post("/v1/connect/transfers", &granted, transfer(dest, 700))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{dest}: {}", r.body);
        assert_eq!(r.json["destination"], provider_id.as_str());
    }
    for dest in [their_provider_id.as_str(), "acct_1AttackerOwned"] {
        let r = s
            .post("/v1/connect/transfers", &granted, transfer(dest, 700))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{dest}: {}", r.body);
        assert_eq!(r.error().2.as_deref(), Some("destination"));
        // A destination charge goes the same way.
        let r = s
            .post("/v1/payments", &a.server, json!({"amount": 5_000, "currency": "usd", "method": "payment_intent", "transfer_destination": dest}))
            .await;
        assert_eq!(
            (r.status, r.error().2.as_deref()),
            (StatusCode::NOT_FOUND, Some("transfer_destination")),
            "{}",
            r.body
        );
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM transfers").await, 2);
    // The grant is for transfers, not for deleting sellers.
    let r = s
        .delete(&format!("/v1/connect/accounts/{aid}"), &granted)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = s
        .delete(&format!("/v1/connect/accounts/{aid}"), &a.admin)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A deleted account is paid no more.
    let r = s
        .post(
            "/v1/connect/transfers",
            &a.admin,
            transfer(&provider_id, 700),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
}

/// A receiver that accepts connections and never answers, holding every one open.
async fn black_hole() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(conn);
        }
    });
    (port, accepted)
}

/// Item 7: one app made 300 endpoints at a receiver that never answers and triggered
/// a few events; another app's `payment.succeeded` callback then took over 30 s. Now an
/// app has at most 16 endpoints, holds at most half the delivery slots, and apps take
/// turns: the other app's callback arrives at once, while every slot the first app
/// may hold hangs (10 s timeout here).
async fn one_apps_hanging_endpoints_do_not_delay_anothers_callbacks(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start_with(&db, &[("PAYBRIDGE_CALLBACK_TIMEOUT", "10")]).await;
    let noisy = s.sandbox_app().await;
    let quiet = s.sandbox_app().await;
    let (port, accepted) = black_hole().await;
    let mut made = 0;
    let mut refusal = None;
    for i in 0..300 {
        let r = s
            .post(
                "/v1/callback_endpoints",
                &noisy.admin,
                json!({"url": format!("http://127.0.0.1:{port}/hook/{i}")}),
            )
            .await;
        if r.status != StatusCode::CREATED {
            refusal = Some(r);
            break;
        }
        made += 1;
    }
    let shirt = s.product(&noisy.admin, "Shirt", 2500, "usd").await;
    // Twelve events (each checkout's payment.pending) to every endpoint.
    for _ in 0..12 {
        s.checkout(&noisy.publishable, &shirt, 1, json!({})).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while accepted.load(Ordering::SeqCst) < 128 {
        assert!(
            Instant::now() < deadline,
            "only {} attempts hang",
            accepted.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let r = Receiver::start().await;
    let e = s
        .post(
            "/v1/callback_endpoints",
            &quiet.admin,
            json!({"url": r.url(), "events": ["payment.pending"]}),
        )
        .await;
    r.control(json!({"secrets": [e.json["secret"]]})).await;
    let quiet_shirt = s.product(&quiet.admin, "Shirt", 2500, "usd").await;
    let started = Instant::now();
    let cs = s
        .checkout(&quiet.publishable, &quiet_shirt, 1, json!({}))
        .await;
    let got = r.until(3, |g| g.iter().any(|x| x["status"] == 200)).await;
    let waited = started.elapsed();
    assert_eq!(got[0]["object_id"], cs["payment"], "{got:?}");
    assert!(
        waited < Duration::from_secs(3),
        "the quiet app's callback took {waited:?}"
    );
    eprintln!("the quiet app's callback arrived in {waited:?} while the noisy app's hang");

    // The limit: 16 endpoints, then a clear refusal.
    assert_eq!(made, 16);
    let refusal = refusal.expect("the 17th endpoint was refused");
    assert_eq!(
        refusal.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refusal.body
    );
    assert_eq!(refusal.error().1, "endpoint_limit_reached");
    // No more than its cap of the noisy app's attempts hang at once.
    assert!(
        accepted.load(Ordering::SeqCst) <= 128 + 16,
        "{}",
        accepted.load(Ordering::SeqCst)
    );
}

/// Item 11: callback endpoints accepted `127.0.0.1`, `169.254.169.254` and other
/// private addresses. A live app's are refused at creation, and checked again after
/// DNS resolution at every delivery (a name that resolved elsewhere at creation and to
/// this machine later reaches nothing). A test app keeps localhost.
async fn a_live_apps_callbacks_reach_only_public_addresses(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let stub = Stub::start(|req, n| match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/v1/checkout/sessions") => (
            200,
            fixture(
                "checkout.session",
                json!({"id": format!("cs_live_{n}"), "url": "https://checkout.stripe.com/c/pay/cs_live", "status": "open",
                       "payment_status": "unpaid", "amount_total": 2500, "currency": "usd", "payment_intent": null,
                       "customer": null, "mode": "payment"}),
            ),
        ),
        _ => (404, stripe_error("invalid_request_error", "resource_missing", "none")),
    })
    .await;
    let s = Server::start_with(
        &db,
        &[
            ("PAYBRIDGE_STRIPE_API_BASE", &stub.base),
            ("PAYBRIDGE_CALLBACK_RETRY_SCHEDULE", "0,1,1"),
        ],
    )
    .await;
    let live = s.app("live").await;
    let r = s
        .put("/v1/payment_config", &live.admin, json!({"provider": "stripe", "provider_public_key": "pk_live_x", "provider_secret_key": "sk_live_x"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    s.put(
        "/v1/payment_config/signing_secret",
        &live.admin,
        json!({"signing_secret": "whsec_live_test"}),
    )
    .await;
    let receiver = Receiver::start().await;
    let port = receiver.port;
    for url in [
        format!("http://127.0.0.1:{port}/hooks"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("http://[::1]:{port}/hooks"),
        format!("http://localhost:{port}/hooks"),
        "http://10.0.0.7/hooks".to_owned(),
        "http://2130706433/hooks".to_owned(),
        "http://[::ffff:127.0.0.1]/hooks".to_owned(),
    ] {
        let r = s
            .post("/v1/callback_endpoints", &live.admin, json!({"url": url}))
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{url}: {}",
            r.body
        );
        assert_eq!(
            (r.error().1.as_str(), r.error().2.as_deref()),
            ("url_not_public", Some("url")),
            "{url}"
        );
    }
    // A test app may point at this machine, for development.
    let test_app = s.sandbox_app().await;
    let r = s
        .post(
            "/v1/callback_endpoints",
            &test_app.admin,
            json!({"url": receiver.url()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    // A name that does not resolve here is accepted at creation (delivery checks it)...
    let e = s
        .post(
            "/v1/callback_endpoints",
            &live.admin,
            json!({"url": "https://hooks.shop.example/paybridge", "events": ["payment.pending"]}),
        )
        .await;
    assert_eq!(e.status, StatusCode::CREATED, "{}", e.body);
    let endpoint = e.json["id"].as_str().unwrap().to_owned();
    receiver
        .control(json!({"secrets": [e.json["secret"]]}))
        .await;
    // ...and then resolves to this machine (DNS rebinding; the stored URL stands in for
    // the name's new answer, which no test here can change). Then an IP host, which
    // needs no resolver at all.
    for (url, said) in [
        (format!("http://localhost:{port}/hooks"), "resolves to"),
        (
            format!("http://127.0.0.1:{port}/hooks"),
            "not a public address",
        ),
    ] {
        db.execute(&format!(
            "UPDATE callback_endpoints SET url = '{url}' WHERE id = '{endpoint}'"
        ))
        .await;
        let product = s.product(&live.admin, "Shirt", 2500, "usd").await;
        let cs = s.checkout(&live.publishable, &product, 1, json!({})).await;
        let payment = cs["payment"].as_str().unwrap();
        let event = s
            .until(&format!("/v1/events?payment={payment}"), &live.admin, |j| {
                j["data"].as_array().is_some_and(|d| !d.is_empty())
            })
            .await["data"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let d = s
            .until(&format!("/v1/deliveries?event={event}"), &live.admin, |j| {
                j["data"][0]["last_error"].is_string()
            })
            .await;
        let error = d["data"][0]["last_error"].as_str().unwrap();
        assert!(
            error.contains("refused") && error.contains(said),
            "{url}: {error}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        receiver.received().await.is_empty(),
        "nothing reached this machine from the live app"
    );
}

/// A sandbox app's publishable key did what only the provider or the app's backend
/// would: opened (and lost) a dispute on any payment, renewed any subscription. It may
/// still do what the paying page does; renewals and disputes take a server key.
async fn the_browsers_key_cannot_dispute_or_renew_on_the_sandbox(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let p = crate::refunds::paid(&s, &a, 1500).await;
    let pid = p["id"].as_str().unwrap();
    let dispute = format!("/v1/sandbox/payments/{pid}/dispute");
    let r = s.post(&dispute, &a.publishable, json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let renew = "/v1/sandbox/subscriptions/subscription_any/renew";
    let r = s.post(renew, &a.publishable, json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let after = s.get(&format!("/v1/payments/{pid}"), &a.server).await;
    assert_eq!(after.json["dispute"], p["dispute"], "nothing changed");
    assert_eq!(after.json["status"], "succeeded");
    // The app's backend still can.
    let r = s.post(&dispute, &a.server, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
