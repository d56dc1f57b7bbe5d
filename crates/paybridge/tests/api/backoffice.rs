//! The dashboard as a shop owner's back office (issue 15): `tests/browser/backoffice.mjs`
//! drives headless Chromium at 1280 px and 390 px against the demo server with a shop's
//! worth of data made here through the API; what the pages did is checked again through
//! the API. The payments export and the list filters it shares are tested here too.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::browser::demo;
use crate::common::{AppKeys, Receiver, Server, TestDb};

/// The shop: four customers (two with a Visa, one whose card is declined, Mia with a
/// Mastercard), a poster each for Ada and Bob, a mug for Ada and one for Mia, a charge
/// of ¥500 and one of KWD 1.250 (Mia's), a decline, an open and an expired checkout,
/// two monthly subscriptions, a callback endpoint that answers 400, and 50 small sales
/// so the list has a second page. Returns the ids the scenarios need, as their
/// environment.
async fn shop(s: &Server, keys: &AppKeys, receiver: &Receiver) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: &Value| env.push((k.into(), v.as_str().unwrap().to_owned()));
    // A receiver that knows no secret answers 400 to every delivery. (Not a 404 from
    // paybridge itself: hundreds of anonymous callbacks from 127.0.0.1 would spend the
    // address's anonymous budget, which the browser's page loads share.)
    let failing = s
        .post(
            "/v1/callback_endpoints",
            &keys.admin,
            json!({"url": receiver.url()}),
        )
        .await;
    put("FAILING_ENDPOINT", &failing.json["id"]);
    let poster = s.product(&keys.admin, "Poster", 2500, "usd").await;
    let mug = s.product(&keys.admin, "Mug", 1200, "usd").await;
    let club = s
        .post(
            "/v1/products",
            &keys.admin,
            json!({"name": "Club", "unit_amount": 1500, "currency": "usd", "recurring": {"interval": "month"}}),
        )
        .await;
    let club = club.json["id"].as_str().unwrap().to_owned();
    let ada = customer(s, keys, "ada", "pm_card_visa").await;
    let bob = customer(s, keys, "bob", "pm_card_visa").await;
    let dec = customer(s, keys, "dec", "pm_card_visa_chargeDeclined").await;
    let (order, payment) = buy(s, keys, &ada, &poster).await;
    put("ORDER", &order);
    put("PAYMENT", &payment);
    put("PAYMENT2", &buy(s, keys, &bob, &poster).await.1);
    buy(s, keys, &ada, &mug).await;
    let declined = s
        .post(
            "/v1/payments",
            &keys.server,
            json!({"amount": 900, "currency": "usd", "method": "card", "customer": dec}),
        )
        .await;
    assert_eq!(declined.status, StatusCode::PAYMENT_REQUIRED);
    let failed = s
        .get(&format!("/v1/payments?customer={dec}"), &keys.admin)
        .await;
    put("FAILED_PAYMENT", &failed.json["data"][0]["id"]);
    let mia = customer(s, keys, "mia", "pm_card_mastercard").await;
    let (order, payment) = buy(s, keys, &mia, &mug).await;
    put("MIA", &json!(mia));
    put("MIA_ORDER", &order);
    put("MIA_PAYMENT", &payment);
    for (name, amount, currency) in [("JPY_PAYMENT", 500, "jpy"), ("KWD_PAYMENT", 1250, "kwd")] {
        let p = s
            .post(
                "/v1/payments",
                &keys.server,
                json!({"amount": amount, "currency": currency, "method": "card", "customer": mia}),
            )
            .await;
        assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
        put(name, &p.json["id"]);
    }
    for name in ["SUBSCRIPTION", "SUBSCRIPTION2"] {
        let who = if name == "SUBSCRIPTION" { &ada } else { &bob };
        let sub = s
            .post(
                "/v1/subscriptions",
                &keys.server,
                json!({"customer": who, "product": club}),
            )
            .await;
        assert_eq!(sub.status, StatusCode::CREATED, "{}", sub.body);
        put(name, &sub.json["id"]);
    }
    for i in 0..50 {
        let p = s
            .post(
                "/v1/payments",
                &keys.server,
                json!({"amount": 300 + i, "currency": "usd", "method": "card", "customer": bob}),
            )
            .await;
        assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    }
    let open = s.checkout(&keys.server, &mug, 1, json!({})).await;
    put("OPEN_PAYMENT", &open["payment"]);
    let abandoned = s.checkout(&keys.server, &mug, 1, json!({})).await;
    let expired = s
        .post(
            &format!(
                "/v1/sandbox/checkout_sessions/{}/expire",
                abandoned["id"].as_str().unwrap()
            ),
            &keys.server,
            json!({}),
        )
        .await;
    assert!(expired.status.is_success(), "{}", expired.body);
    put("EXPIRED_PAYMENT", &abandoned["payment"]);
    put("CUSTOMER", &json!(ada));
    // What the overview must say: 4 sales + 2 in yen and dinars + 2 subscriptions' first
    // charges + 50.
    put(
        "FIGURES",
        &json!(json!({"succeeded": 58, "failed": 1, "open": 1, "abandoned": 1}).to_string()),
    );
    put("TOTAL_PAYMENTS", &json!("61"));
    env
}

async fn customer(s: &Server, keys: &AppKeys, ext: &str, pm: &str) -> String {
    let c = s
        .post(
            "/v1/customers",
            &keys.server,
            json!({"external_id": ext, "email": format!("{ext}@example.com")}),
        )
        .await;
    let id = c.json["id"].as_str().unwrap().to_owned();
    let card = s
        .post(
            &format!("/v1/customers/{id}/payment_methods"),
            &keys.server,
            json!({ "payment_method": pm }),
        )
        .await;
    assert!(card.status.is_success(), "{}", card.body);
    id
}

/// Ada or Bob buys one product with the saved card: (order, payment).
async fn buy(s: &Server, keys: &AppKeys, customer: &str, product: &str) -> (Value, Value) {
    let o = s
        .post(
            "/v1/orders",
            &keys.server,
            json!({"customer": customer, "line_items": [{"product": product, "quantity": 1}]}),
        )
        .await;
    let p = s
        .post(
            "/v1/payments",
            &keys.server,
            json!({"order": o.json["id"], "method": "card", "customer": customer}),
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    (o.json["id"].clone(), p.json["id"].clone())
}

/// Runs one scenario of `backoffice.mjs`; returns the JSON it printed.
pub(crate) fn scenario(s: &Server, keys: &AppKeys, name: &str, env: &[(String, String)]) -> Value {
    let artifacts = paybridge_testkit::repo_root().join("target/browser-artifacts");
    let mut cmd = Command::new("node");
    cmd.arg("backoffice.mjs")
        .arg(name)
        .current_dir(paybridge_testkit::repo_root().join("tests/browser"))
        .env("BASE", &s.base)
        .env("ADMIN_KEY", &keys.admin)
        .env(
            "CHROMIUM",
            std::env::var("PAYBRIDGE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
        )
        .env("ARTIFACTS", &artifacts)
        .envs(env.iter().map(|(k, v)| (k, v)));
    if let Ok(dir) = std::env::var("PAYBRIDGE_SCREENSHOTS") {
        cmd.env("SCREENSHOTS", dir);
    }
    let out = cmd.output().expect("run node");
    assert!(
        out.status.success(),
        "browser scenario {name} failed (screenshots in {}):\n{}\nserver log:\n{}",
        artifacts.display(),
        String::from_utf8_lossy(&out.stderr),
        s.logs()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{name} printed {stdout}: {e}"))
}

/// The demo server with the shop's data, after one scenario ran on it.
struct Ran {
    _db: TestDb,
    _receiver: Receiver,
    s: Server,
    keys: AppKeys,
    env: Vec<(String, String)>,
    out: Value,
}

async fn run(name: &str) -> Ran {
    let (db, s, keys) = demo().await;
    let receiver = Receiver::start().await;
    let env = shop(&s, &keys, &receiver).await;
    let out = scenario(&s, &keys, name, &env);
    Ran {
        _db: db,
        _receiver: receiver,
        s,
        keys,
        env,
        out,
    }
}

fn get<'a>(env: &'a [(String, String)], k: &str) -> &'a str {
    &env.iter().find(|(key, _)| key == k).unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_defects_are_gone() {
    run("dashboard-defects").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_pages_fit_a_phone() {
    run("dashboard-phone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_tells_abandoned_checkouts_from_declines() {
    let Ran { s, keys, .. } = run("truth-at-a-glance").await;
    let r = s.get("/v1/reports/payments?days=1", &keys.admin).await;
    let d = &r.json["data"][0];
    assert_eq!(
        (&d["succeeded"], &d["failed"], &d["open"], &d["abandoned"]),
        (&json!(58), &json!(1), &json!(1), &json!(1)),
        "{d}"
    );
    assert_eq!(d["payments"], 61);
    let rate = d["success_rate"].as_f64().unwrap();
    assert!(
        (rate - 58.0 / 59.0).abs() < 1e-9,
        "an abandoned checkout is not a decline: {rate}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_in_the_dashboard_are_confirmed_and_in_dollars() {
    let Ran {
        s, keys, env, out, ..
    } = run("refunds").await;
    for (width, payment) in [("1280", "PAYMENT"), ("390", "PAYMENT2")] {
        let refund = out[width]["refund"].as_str().unwrap();
        let r = s.get(&format!("/v1/refunds/{refund}"), &keys.admin).await;
        assert_eq!(r.json["amount"], 700, "$7.00 typed is 700 cents");
        assert_eq!(r.json["payment"], get(&env, payment));
        let all = s
            .get(
                &format!("/v1/refunds?payment={}", get(&env, payment)),
                &keys.admin,
            )
            .await;
        assert_eq!(
            all.json["data"].as_array().unwrap().len(),
            1,
            "one refund, once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_products_and_search_in_the_dashboard() {
    run("who-and-what").await;
}

/// The card on every list and page, searches by its last 4 and by amounts in any
/// currency's units, customers found by email on the server, date pickers on orders,
/// customers and subscriptions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cards_currencies_and_date_ranges_in_the_dashboard() {
    let Ran { out, env, .. } = run("cards-and-dates").await;
    for width in ["1280", "390"] {
        let mias = [
            get(&env, "KWD_PAYMENT"),
            get(&env, "JPY_PAYMENT"),
            get(&env, "MIA_PAYMENT"),
        ];
        assert_eq!(out[width]["byLast4"], json!(mias), "newest first: {out}");
        assert_eq!(
            out[width]["byYen"],
            json!([get(&env, "JPY_PAYMENT")]),
            "{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_lists_page_filter_and_export() {
    run("lists-that-scale").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_canceled_from_the_dashboard() {
    let Ran { s, keys, env, .. } = run("subscriptions").await;
    for k in ["SUBSCRIPTION", "SUBSCRIPTION2"] {
        let sub = s
            .get(&format!("/v1/subscriptions/{}", get(&env, k)), &keys.admin)
            .await;
        assert_eq!(sub.json["status"], "canceled", "{}", sub.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_is_set_up_without_curl() {
    let Ran { s, keys, out, .. } = run("set-up").await;
    for width in ["1280", "390"] {
        let p = s
            .get(
                &format!("/v1/products/{}", out[width]["product"].as_str().unwrap()),
                &keys.admin,
            )
            .await;
        assert_eq!(p.json["active"], false);
        assert_eq!(p.json["unit_amount"], 2100);
        let e = s
            .get(
                &format!(
                    "/v1/callback_endpoints/{}",
                    out[width]["endpoint"].as_str().unwrap()
                ),
                &keys.admin,
            )
            .await;
        assert_ne!(e.json["status"], "enabled", "deleted: {}", e.body);
    }
}

/// The export: admin keys only, every matching payment (past the 100 of a page), the
/// list's filters, amounts in major units, and a formula-looking email defused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payments_export_is_a_csv_of_every_matching_payment() {
    let db = crate::common::TestDb::new(crate::common::Backend::Sqlite)
        .await
        .unwrap();
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let c = s
        .post(
            "/v1/customers",
            &a.server,
            json!({"external_id": "x", "email": "=cmd@example.com"}),
        )
        .await;
    let cid = c.json["id"].as_str().unwrap().to_owned();
    s.post(
        &format!("/v1/customers/{cid}/payment_methods"),
        &a.server,
        json!({"payment_method": "pm_card_visa"}),
    )
    .await;
    for i in 0..120 {
        let p = s
            .post(
                "/v1/payments",
                &a.server,
                json!({"amount": 1000 + i, "currency": "usd", "method": "card", "customer": cid}),
            )
            .await;
        assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    }
    let csv = |q: &str, key: &str| {
        let req = s
            .http
            .get(s.url(&format!("/v1/payments/export{q}")))
            .bearer_auth(key);
        async move { req.send().await.unwrap() }
    };
    let r = csv("", &a.admin).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let body = r.text().await.unwrap();
    let lines: Vec<&str> = body.trim_end().split("\r\n").collect();
    assert_eq!(lines.len(), 121, "a header and every payment");
    assert!(lines[0].starts_with("id,created,status,amount,currency"));
    let newest: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(newest[3], "11.19", "{}", lines[1]);
    assert_eq!(newest[9], "'=cmd@example.com", "a formula is defused");
    // The list's filters.
    let some = csv("?amount[gte]=1100&amount[lte]=1109", &a.admin)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(some.trim_end().split("\r\n").count(), 11);
    let list = s
        .get(
            "/v1/payments?amount[gte]=1100&amount[lte]=1109&limit=100",
            &a.admin,
        )
        .await;
    assert_eq!(list.json["data"].as_array().unwrap().len(), 10);
    let by_email = s
        .get("/v1/payments?email==CMD@example.com&limit=1", &a.admin)
        .await;
    assert_eq!(
        by_email.json["data"].as_array().unwrap().len(),
        1,
        "{}",
        by_email.body
    );
    let nobody = s
        .get("/v1/payments?email=nobody@example.com", &a.admin)
        .await;
    assert_eq!(nobody.json["data"].as_array().unwrap().len(), 0);
    let future = s
        .get("/v1/payments?created[gte]=4000000000", &a.admin)
        .await;
    assert_eq!(future.json["data"].as_array().unwrap().len(), 0);
    // Refusals: a server key, paging, a bad filter.
    assert_eq!(csv("", &a.server).await.status(), StatusCode::FORBIDDEN);
    assert!(csv("?limit=5", &a.admin).await.status().is_client_error());
    for q in [
        "amount[gte]=-1",
        "product=prod%25",
        "created[gte]=yesterday",
        "status=paid",
    ] {
        let bad = s.get(&format!("/v1/payments?{q}"), &a.admin).await;
        assert!(bad.status.is_client_error(), "{q}: {}", bad.body);
        assert!(
            bad.json["error"]["message"].is_string(),
            "{q}: {}",
            bad.body
        );
        let bad = csv(&format!("?{q}"), &a.admin).await;
        assert!(bad.status().is_client_error(), "{q}");
    }
}
