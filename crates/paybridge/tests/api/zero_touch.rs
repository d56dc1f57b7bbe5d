//! Zero-touch Stripe (issue 17): paybridge makes its own webhook endpoint when an
//! app's Stripe key is set (against a stateful recording stub shaped like Stripe's
//! published `webhook_endpoint`, since localstripe has no `/v1/webhook_endpoints`), and
//! the catch-up worker reads `GET /v1/events` (against localstripe, which has it).

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paybridge_core::stripe::signature;
use paybridge_testkit::LocalStripe;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{AppKeys, Backend, Resp, Server, TestDb};
use crate::stub::{fixture, Recorded, Stub};

paybridge_testkit::on_both!(
    setting_a_stripe_key_makes_our_webhook_endpoint,
    a_new_key_or_url_moves_our_endpoint_and_never_a_hand_made_one,
    a_restricted_key_or_a_private_url_names_the_fallback,
    the_catch_up_worker_applies_what_webhooks_never_brought,
    events_sync_cli_reads_from_since,
    portal_sessions_send_the_customer_to_stripes_portal,
    the_sandbox_portal_cancels_and_changes_the_default_card,
    an_endpoint_made_before_a_new_event_type_is_given_it_at_start,
);

const PUBLIC: &str = "https://pay.example.com";
/// What paybridge reads: exactly `paybridge_core::stripe::event::HANDLED`.
fn handled() -> Vec<String> {
    paybridge_core::stripe::event::HANDLED
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A Stripe with accounts (one per secret key) holding webhook endpoints: list, create
/// (the answer carries the secret), update, delete. Everything else is a 404.
#[derive(Default)]
struct Accounts {
    by_key: BTreeMap<String, Vec<Value>>,
    next: usize,
}

fn key_of(r: &Recorded) -> String {
    r.header("authorization")
        .unwrap_or("")
        .trim_start_matches("Bearer ")
        .to_owned()
}

fn endpoint_stub(accounts: Arc<Mutex<Accounts>>) -> impl Fn(&Recorded, usize) -> (u16, Value) {
    move |r, _| {
        let mut a = accounts.lock().unwrap();
        let key = key_of(r);
        if key.starts_with("rk_") {
            return (
                403,
                json!({"error": {"type": "invalid_request_error", "message": format!("The provided key '{}***' does not have the required permissions for this endpoint. Having the 'rak_webhook_write' permission would allow this request to continue.", &key[..8])}}),
            );
        }
        let path = r.path.as_str();
        if path == "/v1/webhook_endpoints" && r.method == "GET" {
            let data = a.by_key.get(&key).cloned().unwrap_or_default();
            return (
                200,
                json!({"object": "list", "url": "/v1/webhook_endpoints", "has_more": false, "data": data}),
            );
        }
        if path == "/v1/webhook_endpoints" && r.method == "POST" {
            a.next += 1;
            let id = format!("we_made{}", a.next);
            let events: Vec<String> = r
                .form
                .iter()
                .filter(|(k, _)| k.starts_with("enabled_events["))
                .map(|(_, v)| v.clone())
                .collect();
            let metadata: serde_json::Map<String, Value> = r
                .form
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix("metadata[")
                        .and_then(|k| k.strip_suffix(']'))
                        .map(|k| (k.to_owned(), json!(v)))
                })
                .collect();
            let e = fixture(
                "webhook_endpoint",
                json!({"id": id, "url": r.form_get("url"), "api_version": r.form_get("api_version"),
                    "enabled_events": events, "metadata": metadata, "description": r.form_get("description")}),
            );
            a.by_key.entry(key).or_default().push(e.clone());
            let mut answer = e;
            answer["secret"] = json!(format!("whsec_made_by_stripe_{id}"));
            return (200, answer);
        }
        if let Some(id) = path.strip_prefix("/v1/webhook_endpoints/") {
            let list = a.by_key.entry(key).or_default();
            let Some(i) = list.iter().position(|e| e["id"] == id) else {
                return (
                    404,
                    json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": format!("No such webhook endpoint: '{id}'")}}),
                );
            };
            if r.method == "DELETE" {
                list.remove(i);
                return (
                    200,
                    json!({"id": id, "object": "webhook_endpoint", "deleted": true}),
                );
            }
            if let Some(url) = r.form_get("url") {
                list[i]["url"] = json!(url);
            }
            let events: Vec<String> = r
                .form
                .iter()
                .filter(|(k, _)| k.starts_with("enabled_events["))
                .map(|(_, v)| v.clone())
                .collect();
            if !events.is_empty() {
                list[i]["enabled_events"] = json!(events);
            }
            return (200, list[i].clone());
        }
        (
            404,
            json!({"error": {"type": "invalid_request_error", "message": "Unrecognized request URL"}}),
        )
    }
}

async fn set_keys(s: &Server, a: &AppKeys, secret: &str) -> Resp {
    s.put(
        "/v1/payment_config",
        &a.admin,
        json!({"provider": "stripe", "provider_public_key": "pk_test_zero_touch", "provider_secret_key": secret}),
    )
    .await
}

async fn send_event(s: &Server, app: &str, secret: &str, body: &str) -> Resp {
    Resp::from(
        s.http
            .post(s.url(&format!("/v1/webhooks/stripe/{app}")))
            .header(
                "stripe-signature",
                signature::sign(body.as_bytes(), secret.as_bytes(), now()),
            )
            .body(body.to_owned())
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// A server whose Stripe is the endpoint stub over `accounts`, with a public URL.
async fn with_endpoint_stub(db: &TestDb, accounts: &Arc<Mutex<Accounts>>) -> (Stub, Server) {
    let stub = Stub::start(endpoint_stub(accounts.clone())).await;
    let s = Server::start_with(
        db,
        &[
            ("PAYBRIDGE_STRIPE_API_BASE", &stub.base),
            ("PAYBRIDGE_PUBLIC_URL", PUBLIC),
            ("PAYBRIDGE_STRIPE_RETRY_BASE_MS", "20"),
        ],
    )
    .await;
    (stub, s)
}

async fn setting_a_stripe_key_makes_our_webhook_endpoint(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let accounts = Arc::new(Mutex::new(Accounts::default()));
    let (stub, s) = with_endpoint_stub(&db, &accounts).await;
    let a = s.app("test").await;
    let r = set_keys(&s, &a, "sk_test_account_one").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Configured with no manual step, and the secret never shown.
    assert_eq!(r.json["configured"], true, "{}", r.body);
    assert_eq!(r.json["has_signing_secret"], true);
    assert!(!r.body.contains("whsec_"), "{}", r.body);
    let we = &r.json["webhook_endpoint"];
    assert_eq!(we["setup"], "managed", "{}", r.body);
    assert_eq!(we["id"], "we_made1");
    assert_eq!(we["status"], "enabled");
    assert_eq!(we["api_version"], "2024-06-20");
    assert_eq!(r.json["event_delivery"], "webhooks");
    let url = format!("{PUBLIC}/v1/webhooks/stripe/{}", a.id);
    assert_eq!(we["url"], url.as_str());
    // What was asked of Stripe: our URL, exactly the types we read, our API version,
    // our mark.
    let made = stub.calls("POST", "/v1/webhook_endpoints");
    assert_eq!(made.len(), 1);
    let m = &made[0];
    assert_eq!(m.form_get("url"), Some(url.as_str()));
    assert_eq!(m.form_get("api_version"), Some("2024-06-20"));
    assert_eq!(m.form_get("metadata[pb_app]"), Some(a.id.as_str()));
    let mut events: Vec<String> = m
        .form
        .iter()
        .filter(|(k, _)| k.starts_with("enabled_events["))
        .map(|(_, v)| v.clone())
        .collect();
    events.sort();
    let mut want = handled();
    want.sort();
    assert_eq!(events, want);
    assert!(m.header("idempotency-key").is_some());
    // The view shows it again.
    let v = s.get("/v1/payment_config", &a.admin).await;
    assert_eq!(v.json["webhook_endpoint"]["id"], "we_made1", "{}", v.body);
    assert_eq!(
        v.json["webhook_endpoint"]["enabled_events"]
            .as_array()
            .unwrap()
            .len(),
        want.len()
    );
    // The sealed secret is the one Stripe gave: an event signed with it is taken.
    let body = json!({"id": "evt_zero_touch_1", "object": "event", "type": "customer.created", "created": now(), "livemode": false,
        "data": {"object": {"id": "cus_1", "object": "customer"}}})
    .to_string();
    let r = send_event(&s, &a.id, "whsec_made_by_stripe_we_made1", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = send_event(&s, &a.id, "whsec_some_other_secret", &body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Setting the same key again keeps the endpoint: nothing made, nothing removed.
    let r = set_keys(&s, &a, "sk_test_account_one").await;
    assert_eq!(r.json["webhook_endpoint"]["id"], "we_made1");
    // Five first setups of another app at once: they take turns, so one endpoint is
    // made and the others keep it (without the per-app lock each would make its own).
    let b2 = s.app("test").await;
    let all =
        futures::future::join_all((0..5).map(|_| set_keys(&s, &b2, "sk_test_account_one"))).await;
    for r in &all {
        assert_eq!(r.json["webhook_endpoint"]["id"], "we_made2", "{}", r.body);
    }
    let made_for_b2 = stub
        .calls("POST", "/v1/webhook_endpoints")
        .iter()
        .filter(|c| c.form_get("metadata[pb_app]") == Some(b2.id.as_str()))
        .count();
    assert_eq!(made_for_b2, 1);
    assert_eq!(stub.calls("POST", "/v1/webhook_endpoints").len(), 2);
    assert!(stub.all().iter().all(|c| c.method != "DELETE"));
    // Leaving Stripe for the sandbox removes the endpoint we made there.
    let r = s
        .put(
            "/v1/payment_config",
            &a.admin,
            json!({"provider": "sandbox"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let deletes: Vec<Recorded> = stub
        .all()
        .into_iter()
        .filter(|c| c.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].path, "/v1/webhook_endpoints/we_made1");
    assert_eq!(key_of(&deletes[0]), "sk_test_account_one");
}

async fn a_new_key_or_url_moves_our_endpoint_and_never_a_hand_made_one(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let accounts = Arc::new(Mutex::new(Accounts::default()));
    // Account one has an endpoint someone made by hand, for another system.
    let hand_made = fixture(
        "webhook_endpoint",
        json!({"id": "we_hand", "url": "https://erp.example.com/stripe", "metadata": {}}),
    );
    accounts
        .lock()
        .unwrap()
        .by_key
        .insert("sk_test_account_one".into(), vec![hand_made]);
    let (stub, mut s) = with_endpoint_stub(&db, &accounts).await;
    let a = s.app("test").await;
    let r = set_keys(&s, &a, "sk_test_account_one").await;
    assert_eq!(r.json["webhook_endpoint"]["id"], "we_made1", "{}", r.body);
    // A key of another account: a new endpoint there, ours in the old account removed
    // (with the old key), the hand-made one untouched.
    let r = set_keys(&s, &a, "sk_test_account_two").await;
    assert_eq!(r.json["webhook_endpoint"]["id"], "we_made2", "{}", r.body);
    assert_eq!(r.json["configured"], true);
    {
        let acc = accounts.lock().unwrap();
        let one: Vec<&str> = acc.by_key["sk_test_account_one"]
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        assert_eq!(one, vec!["we_hand"]);
        assert_eq!(acc.by_key["sk_test_account_two"].len(), 1);
    }
    let deletes: Vec<Recorded> = stub
        .all()
        .into_iter()
        .filter(|c| c.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].path, "/v1/webhook_endpoints/we_made1");
    assert_eq!(key_of(&deletes[0]), "sk_test_account_one");
    // The new secret verifies; the old one keeps working through its grace period.
    let body = json!({"id": "evt_zero_touch_2", "object": "event", "type": "customer.created", "created": now(), "livemode": false,
        "data": {"object": {"id": "cus_2", "object": "customer"}}})
    .to_string();
    assert_eq!(
        send_event(&s, &a.id, "whsec_made_by_stripe_we_made2", &body)
            .await
            .status,
        StatusCode::OK
    );

    // A new public URL: at start the endpoint is pointed there (updated, not remade).
    s.kill9();
    let moved = "https://payments.example.org/pb";
    let mut s2 = Server::start_with(
        &db,
        &[
            ("PAYBRIDGE_STRIPE_API_BASE", &stub.base),
            ("PAYBRIDGE_PUBLIC_URL", moved),
            ("PAYBRIDGE_EVENT_SYNC_INTERVAL", "3600"),
            ("PAYBRIDGE_STRIPE_RETRY_BASE_MS", "20"),
        ],
    )
    .await;
    let want = format!("{moved}/v1/webhooks/stripe/{}", a.id);
    let mut seen = Value::Null;
    for _ in 0..100 {
        seen = s2.get("/v1/payment_config", &a.admin).await.json;
        if seen["webhook_endpoint"]["url"] == want.as_str() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen["webhook_endpoint"]["url"], want.as_str(), "{seen}");
    assert_eq!(seen["webhook_endpoint"]["id"], "we_made2");
    let updates = stub.calls("POST", "/v1/webhook_endpoints/we_made2");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].form_get("url"), Some(want.as_str()));
    assert_eq!(stub.calls("POST", "/v1/webhook_endpoints").len(), 2);
    assert!(accounts.lock().unwrap().by_key["sk_test_account_one"]
        .iter()
        .any(|e| e["id"] == "we_hand"));
    s2.kill9();
}

async fn a_restricted_key_or_a_private_url_names_the_fallback(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let accounts = Arc::new(Mutex::new(Accounts::default()));
    let (stub, s) = with_endpoint_stub(&db, &accounts).await;
    let a = s.app("test").await;
    // A restricted key without the webhook permission: the keys are kept, the answer
    // says what is missing and what to do instead.
    let r = set_keys(&s, &a, "rk_test_restricted_no_webhooks").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json["has_provider_secret_key"], true);
    assert_eq!(r.json["configured"], false);
    let we = &r.json["webhook_endpoint"];
    assert_eq!(we["setup"], "permission_denied", "{}", r.body);
    let msg = we["message"].as_str().unwrap();
    assert!(msg.contains("Webhook Endpoints"), "{msg}");
    assert!(
        msg.contains("PUT /v1/payment_config/signing_secret"),
        "{msg}"
    );
    assert!(msg.contains("polls"), "{msg}");
    assert!(!msg.contains("rk_test_restricted"), "the key leaked: {msg}");
    assert!(stub.calls("POST", "/v1/webhook_endpoints").is_empty());
    // The manual path stays.
    let r = s
        .put(
            "/v1/payment_config/signing_secret",
            &a.admin,
            json!({"signing_secret": "whsec_set_by_hand_0001"}),
        )
        .await;
    assert_eq!(r.json["configured"], true, "{}", r.body);
    assert_eq!(r.json["webhook_endpoint"]["setup"], "manual");
    drop(s);

    // No public URL (the default, 127.0.0.1): no call to Stripe at all, and polling is
    // the whole delivery path, so the keys alone configure the app.
    let db2 = TestDb::new(b).await.unwrap();
    let s = Server::start_with(
        &db2,
        &[
            ("PAYBRIDGE_STRIPE_API_BASE", &stub.base),
            ("PAYBRIDGE_STRIPE_RETRY_BASE_MS", "20"),
        ],
    )
    .await;
    let before = stub.all().len();
    let a = s.app("test").await;
    let r = set_keys(&s, &a, "sk_test_laptop").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let we = &r.json["webhook_endpoint"];
    assert_eq!(we["setup"], "unreachable_url", "{}", r.body);
    let msg = we["message"].as_str().unwrap();
    assert!(msg.contains("Stripe cannot reach"), "{msg}");
    assert!(msg.contains("polls Stripe's event list"), "{msg}");
    assert_eq!(r.json["event_delivery"], "polling");
    assert_eq!(r.json["configured"], true);
    assert_eq!(stub.all().len(), before, "no call to Stripe");
    // Said at start too.
    assert!(
        s.banner().contains("polling Stripe's event list"),
        "{}",
        s.banner()
    );
}

async fn localstripe_call(ls: &LocalStripe, path: &str, form: &[(&str, &str)]) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", ls.base))
        .bearer_auth("sk_test_zero_touch_localstripe")
        .form(form)
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// A payment intent that localstripe then succeeds, with no webhook registered there:
/// only Stripe's event list says so.
async fn pay_without_webhooks(s: &Server, ls: &LocalStripe, a: &AppKeys, amount: i64) -> String {
    let p = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": amount, "currency": "usd", "method": "payment_intent"}),
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    let pi = p.json["provider"]["payment_intent"]
        .as_str()
        .unwrap()
        .to_owned();
    let pm = localstripe_call(
        ls,
        "/v1/payment_methods",
        &[
            ("type", "card"),
            ("card[number]", "4242424242424242"),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2034"),
            ("card[cvc]", "123"),
        ],
    )
    .await;
    let pm = pm["id"].as_str().unwrap();
    localstripe_call(
        ls,
        &format!("/v1/payment_intents/{pi}"),
        &[("payment_method", pm)],
    )
    .await;
    let done = localstripe_call(ls, &format!("/v1/payment_intents/{pi}/confirm"), &[]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    p.json["id"].as_str().unwrap().to_owned()
}

async fn the_catch_up_worker_applies_what_webhooks_never_brought(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let ls = LocalStripe::start().await;
    let s = Server::start_with(
        &db,
        &[
            ("PAYBRIDGE_STRIPE_API_BASE", &ls.base),
            ("PAYBRIDGE_EVENT_SYNC_INTERVAL", "1"),
            ("PAYBRIDGE_STRIPE_RETRY_BASE_MS", "20"),
        ],
    )
    .await;
    let a = s.app("test").await;
    let r = set_keys(&s, &a, "sk_test_zero_touch_localstripe").await;
    assert_eq!(r.json["configured"], true, "{}", r.body);
    let pid = pay_without_webhooks(&s, &ls, &a, 2300).await;
    // No webhook: the worker's next round finds payment_intent.succeeded in the list.
    let paid = s
        .until(&format!("/v1/payments/{pid}"), &a.server, |p| {
            p["status"] == "succeeded"
        })
        .await;
    assert_eq!(paid["amount_captured"], 2300);
    let events = s
        .get(
            "/v1/provider_events?type=payment_intent.succeeded",
            &a.admin,
        )
        .await;
    let e = &events.json["data"][0];
    assert_eq!(e["outcome"], "processed", "{}", events.body);
    let evt = e["id"].as_str().unwrap().to_owned();
    // Read again on every round, stored and applied once.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let again = s.get(&format!("/v1/provider_events/{evt}"), &a.admin).await;
    assert_eq!(again.json["received_count"], 1, "{}", again.body);
    let succeeded = s.event_types(&a.admin, "type=payment.succeeded").await;
    assert_eq!(succeeded.len(), 1, "{succeeded:?}");
    // The same event arriving late by webhook is a duplicate: no second effect.
    let raw = reqwest::Client::new()
        .get(format!("{}/v1/events/{evt}", ls.base))
        .bearer_auth("sk_test_zero_touch_localstripe")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = s
        .put(
            "/v1/payment_config/signing_secret",
            &a.admin,
            json!({"signing_secret": "whsec_late_webhook_0001"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send_event(&s, &a.id, "whsec_late_webhook_0001", &raw).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json["duplicate"], true, "{}", r.body);
    assert_eq!(
        s.event_types(&a.admin, "type=payment.succeeded")
            .await
            .len(),
        1
    );
    // The view and the metrics show the worker.
    let v = s.get("/v1/payment_config", &a.admin).await;
    let sync = &v.json["event_sync"];
    assert!(sync["events_new"].as_i64().unwrap() >= 1, "{}", v.body);
    assert!(sync["lag_seconds"].as_i64().unwrap() <= 5, "{}", v.body);
    assert!(sync["last_error"].is_null(), "{}", v.body);
    let m = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("paybridge_event_sync_lag_seconds"), "{m}");
    assert!(
        m.lines().any(
            |l| l.starts_with("paybridge_event_sync_events_total{outcome=\"new\"}")
                && !l.ends_with(" 0")
        ),
        "{m}"
    );
}

async fn events_sync_cli_reads_from_since(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let ls = LocalStripe::start().await;
    let mut s = Server::start_with(
        &db,
        &[
            ("PAYBRIDGE_STRIPE_API_BASE", &ls.base),
            ("PAYBRIDGE_STRIPE_RETRY_BASE_MS", "20"),
        ],
    )
    .await;
    let a = s.app("test").await;
    set_keys(&s, &a, "sk_test_zero_touch_localstripe").await;
    let pid = pay_without_webhooks(&s, &ls, &a, 1700).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.get(&format!("/v1/payments/{pid}"), &a.server).await.json["status"],
        "pending",
        "the worker is off in this test, and no webhook came"
    );
    s.kill9();
    let run = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_paybridge"));
        cmd.args(["events", "sync", "--app", &a.id, "--database-url", &db.url])
            .args(args)
            .env("PAYBRIDGE_STRIPE_API_BASE", &ls.base)
            .current_dir(db.dir.path());
        if b == Backend::Postgres {
            cmd.env("PAYBRIDGE_MASTER_KEY", &db.master_key);
        }
        cmd.output().unwrap()
    };
    let out = run(&["--since", "2h"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(report["new"].as_i64().unwrap() >= 1, "{report}");
    assert!(
        report["since"].as_i64().unwrap() <= now() - 7190,
        "{report}"
    );
    // Run again: everything is known now.
    let out = run(&[]);
    let report: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(report["new"], 0, "{report}");
    // A bad --since is refused, not guessed.
    let out = run(&["--since", "yesterday-ish"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since"));
    s.restart().await;
    let p = s.get(&format!("/v1/payments/{pid}"), &a.server).await;
    assert_eq!(p.json["status"], "succeeded", "{}", p.body);
}

async fn portal_sessions_send_the_customer_to_stripes_portal(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let stub = Stub::start(|r: &Recorded, _| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/v1/customers") => (200, fixture("customer", json!({"id": "cus_portal1"}))),
        ("POST", "/v1/billing_portal/sessions") => (
            200,
            // Stripe's published billing_portal.session.
            json!({"id": "bps_1MrSjzLkdIwHu7ixex0IvU9b", "object": "billing_portal.session",
                "configuration": "bpc_1MAhNDLkdIwHu7ixckACO1Jq", "created": 1680210639,
                "customer": r.form_get("customer"), "flow": null, "livemode": false, "locale": null,
                "on_behalf_of": null, "return_url": r.form_get("return_url"),
                "url": "https://billing.stripe.com/p/session/test_YWNjdF8xTTJKVGtMa2RJd0h1N2l4"}),
        ),
        _ => (404, json!({"error": {"type": "invalid_request_error", "message": "Unrecognized request URL"}})),
    })
    .await;
    let s = Server::start_with(
        &db,
        &[
            ("PAYBRIDGE_STRIPE_API_BASE", &stub.base),
            ("PAYBRIDGE_STRIPE_RETRY_BASE_MS", "20"),
        ],
    )
    .await;
    let a = s.app("test").await;
    set_keys(&s, &a, "sk_test_portal").await;
    let c = s
        .post(
            "/v1/customers",
            &a.server,
            json!({"external_id": "portal-1", "email": "ada@example.com"}),
        )
        .await;
    let cid = c.json["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/customers/{cid}/portal_sessions");
    let r = s
        .post(
            &path,
            &a.server,
            json!({"return_url": "https://shop.example.com/account"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json["object"], "portal_session");
    assert_eq!(r.json["customer"], cid.as_str());
    assert_eq!(r.json["id"], "bps_1MrSjzLkdIwHu7ixex0IvU9b");
    assert!(r.json["url"]
        .as_str()
        .unwrap()
        .starts_with("https://billing.stripe.com/p/session/"));
    assert_eq!(r.json["return_url"], "https://shop.example.com/account");
    let sent = stub.calls("POST", "/v1/billing_portal/sessions");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].form_get("customer"), Some("cus_portal1"));
    assert_eq!(
        sent[0].form_get("return_url"),
        Some("https://shop.example.com/account")
    );
    // Only a server (or admin) key; a bad return URL and an unknown customer are the caller's.
    let r = s
        .post(
            &path,
            &a.publishable,
            json!({"return_url": "https://shop.example.com/"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s
        .post(
            &path,
            &a.server,
            json!({"return_url": "javascript:alert(1)"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.error().2.as_deref(), Some("return_url"));
    let r = s
        .post(
            "/v1/customers/customer_nope/portal_sessions",
            &a.server,
            json!({"return_url": "https://shop.example.com/"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(stub.calls("POST", "/v1/billing_portal/sessions").len(), 1);
}

async fn the_sandbox_portal_cancels_and_changes_the_default_card(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let cid = s.customer_with_card(&a.server, "portal-sandbox").await;
    let second = s
        .post(
            &format!("/v1/customers/{cid}/payment_methods"),
            &a.server,
            json!({"payment_method": "pm_card_mastercard"}),
        )
        .await;
    assert!(second.status.is_success(), "{}", second.body);
    let pro = s
        .post("/v1/products", &a.admin, json!({"name": "Pro", "unit_amount": 1_500, "currency": "usd", "recurring": {"interval": "month"}}))
        .await;
    let sub = s
        .post(
            "/v1/subscriptions",
            &a.server,
            json!({"customer": cid, "product": pro.json["id"]}),
        )
        .await;
    assert_eq!(sub.status, StatusCode::CREATED, "{}", sub.body);
    let sid = sub.json["id"].as_str().unwrap().to_owned();
    let r = s
        .post(
            &format!("/v1/customers/{cid}/portal_sessions"),
            &a.server,
            json!({"return_url": "https://shop.example.com/account"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let url = r.json["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{}/sandbox/portal/{}/bps_", s.base, a.id)),
        "{url}"
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("$15.00 / month"), "{html}");
    assert!(html.contains("Cancel subscription"), "{html}");
    assert!(html.contains("Make default"), "{html}");
    assert!(html.contains("https://shop.example.com/account"), "{html}");
    // The customer cancels: the sandbox's events reach paybridge's subscription.
    let psub = html
        .split("subscriptions/")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_owned();
    let r = http
        .post(format!("{url}/subscriptions/{psub}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let done = s
        .until(&format!("/v1/subscriptions/{sid}"), &a.server, |v| {
            v["status"] == "canceled"
        })
        .await;
    assert_eq!(done["status"], "canceled");
    let html = http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(!html.contains("Cancel subscription"), "{html}");
    // Makes the other card the default at the provider.
    let pm = html
        .split("payment_methods/")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_owned();
    let r = http
        .post(format!("{url}/payment_methods/{pm}/default"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let html = http.get(&url).send().await.unwrap().text().await.unwrap();
    let li = html
        .split(&format!("data-id=\"{pm}\">"))
        .nth(1)
        .and_then(|r| r.split("</li>").next())
        .unwrap();
    assert!(li.contains("class=default"), "{html}");
    assert!(
        !html.contains(&format!("payment_methods/{pm}/default")),
        "{html}"
    );
    // Another session's objects and an unknown session are not reachable.
    let r = http
        .post(format!("{url}/subscriptions/sub_not_theirs/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http
        .get(format!("{}/sandbox/portal/{}/bps_unknown", s.base, a.id))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// The dashboard's payment configuration shows the endpoint paybridge made at Stripe:
/// its id, URL, status and API version, at 1280 and 390 px.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_our_stripe_endpoint() {
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let accounts = Arc::new(Mutex::new(Accounts::default()));
    let (_stub, s) = with_endpoint_stub(&db, &accounts).await;
    let a = s.app("test").await;
    let r = set_keys(&s, &a, "sk_test_dashboard").await;
    assert_eq!(r.json["webhook_endpoint"]["setup"], "managed", "{}", r.body);
    let out = crate::backoffice::scenario(&s, &a, "stripe-endpoint", &[]);
    let url = format!("{PUBLIC}/v1/webhooks/stripe/{}", a.id);
    for width in ["1280", "390"] {
        let seen = &out[width];
        assert_eq!(seen["setup"], "managed", "{out}");
        assert_eq!(seen["id"], "we_made1", "{out}");
        assert_eq!(seen["url"], url.as_str(), "{out}");
        assert_eq!(seen["status"], "enabled", "{out}");
        assert_eq!(seen["api_version"], "2024-06-20", "{out}");
        assert_eq!(
            seen["events"],
            format!("{} types", handled().len()).as_str(),
            "{out}"
        );
        assert!(
            seen["delivery"]
                .as_str()
                .unwrap()
                .starts_with("by webhooks"),
            "{out}"
        );
    }
}

/// An endpoint made by a paybridge that read fewer event types (before
/// `invoice.payment_action_required`) is given the new list at start, in place.
async fn an_endpoint_made_before_a_new_event_type_is_given_it_at_start(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let accounts = Arc::new(Mutex::new(Accounts::default()));
    let stub = Stub::start(endpoint_stub(accounts.clone())).await;
    let env = [
        ("PAYBRIDGE_STRIPE_API_BASE", stub.base.as_str()),
        ("PAYBRIDGE_PUBLIC_URL", PUBLIC),
        ("PAYBRIDGE_EVENT_SYNC_INTERVAL", "3600"),
        ("PAYBRIDGE_STRIPE_RETRY_BASE_MS", "20"),
    ];
    let mut s = Server::start_with(&db, &env).await;
    let a = s.app("test").await;
    let r = set_keys(&s, &a, "sk_test_older").await;
    assert_eq!(r.json["webhook_endpoint"]["id"], "we_made1", "{}", r.body);
    s.kill9();
    // As an older paybridge left it, at Stripe and in our record.
    let older: Vec<String> = handled()
        .into_iter()
        .filter(|t| t != "invoice.payment_action_required")
        .collect();
    accounts
        .lock()
        .unwrap()
        .by_key
        .get_mut("sk_test_older")
        .unwrap()[0]["enabled_events"] = json!(older);
    db.execute(&format!(
        "UPDATE stripe_webhook_endpoints SET enabled_events = '{}'",
        json!(older)
    ))
    .await;
    let s2 = Server::start_with(&db, &env).await;
    let mut seen = Value::Null;
    for _ in 0..100 {
        seen = s2.get("/v1/payment_config", &a.admin).await.json;
        if seen["webhook_endpoint"]["enabled_events"]
            .as_array()
            .is_some_and(|e| e.len() == handled().len())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut got: Vec<String> =
        serde_json::from_value(seen["webhook_endpoint"]["enabled_events"].clone()).unwrap();
    got.sort();
    let mut want = handled();
    want.sort();
    assert_eq!(got, want, "{seen}");
    // Updated in place: the same endpoint, and its secret kept.
    assert_eq!(seen["webhook_endpoint"]["id"], "we_made1");
    let updates = stub.calls("POST", "/v1/webhook_endpoints/we_made1");
    assert_eq!(updates.len(), 1);
    assert!(updates[0]
        .form
        .iter()
        .any(|(k, v)| k.starts_with("enabled_events[") && v == "invoice.payment_action_required"));
    assert_eq!(stub.calls("POST", "/v1/webhook_endpoints").len(), 1);
    drop(s);
}
