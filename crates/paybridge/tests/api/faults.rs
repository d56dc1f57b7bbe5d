//! Provider faults: a fault-injecting proxy between paybridge and localstripe that
//! times out, cuts connections before or after the provider acted, and answers 500 and
//! 429. Whatever happens, the caller gets a clear error or the right result, and the
//! provider acts at most once per operation of ours.
//!
//! localstripe ignores `Idempotency-Key` (see LOCALSTRIPE.md), so the proxy plays the
//! part of Stripe's idempotency layer, as Stripe documents it: the first request with a
//! key is forwarded and its answer kept; a later one with the same key gets that answer
//! again (`Idempotent-Replayed: true`) without reaching the provider. A paybridge that
//! made up a new key on retry would therefore reach localstripe twice, and fail here.
//! localstripe also refuses the filters of `GET /v1/payment_intents` (`customer`,
//! `created[gte]`, `created[lte]`), so the proxy asks it for the unfiltered page and
//! applies them as Stripe documents them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use paybridge_testkit::LocalStripe;
use serde_json::json;

use crate::common::{AppKeys, Backend, Server, TestDb};

paybridge_testkit::on_both!(
    charges_captures_and_refunds_survive_provider_faults_once_each,
    charges_cut_off_by_a_crash_are_settled_by_the_reconciler,
);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// The provider acts; the answer comes after paybridge has given up waiting.
    SlowAfter,
    /// The provider acts; the connection is cut before the answer is complete.
    CutAfter,
    /// The connection is cut before the provider sees anything.
    CutBefore,
    /// 500 before the provider sees anything.
    Error500,
    /// 429 with Retry-After: 1.
    TooMany,
    /// 401 before the provider sees anything (a key rotated at the provider).
    Unauthorized,
    /// The provider never sees the request, and no answer comes for a minute.
    HangBefore,
    /// The provider acts, and no answer comes for a minute.
    HangAfter,
}

const HANG: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    key: Option<String>,
    /// Reached localstripe (not a fault before it, not a replay).
    forwarded: bool,
}

/// Faults for the requests whose `METHOD path` starts with a prefix, in turn.
type Plan = (String, VecDeque<Fault>);

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    /// Faults for the next requests whose `METHOD path` starts with the prefix.
    plan: Arc<Mutex<Vec<Plan>>>,
    replays: Arc<Mutex<HashMap<String, (u16, Bytes)>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Proxy {
    async fn start(upstream: &str) -> (Proxy, String) {
        let p = Proxy {
            upstream: upstream.to_owned(),
            http: reqwest::Client::new(),
            plan: Arc::default(),
            replays: Arc::default(),
            seen: Arc::default(),
        };
        let app = axum::Router::new().fallback(handle).with_state(p.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (p, base)
    }

    fn inject(&self, prefix: &str, faults: &[Fault]) {
        self.plan
            .lock()
            .unwrap()
            .push((prefix.to_owned(), faults.iter().copied().collect()));
    }

    fn next_fault(&self, line: &str) -> Option<Fault> {
        let mut plan = self.plan.lock().unwrap();
        let entry = plan
            .iter_mut()
            .find(|(p, q)| line.starts_with(p.as_str()) && !q.is_empty())?;
        entry.1.pop_front()
    }

    /// The requests to `METHOD path` so far.
    fn seen(&self, method: &str, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .cloned()
            .collect()
    }

    fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

fn cut() -> Response {
    // Headers, then a body that fails: the client sees the connection drop mid-answer.
    let body = Body::from_stream(futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("connection reset by the fault proxy"))
    }));
    (StatusCode::OK, [("content-type", "application/json")], body).into_response()
}

async fn handle(
    State(p): State<Proxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let line = format!("{method} {path}");
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if method == Method::GET && path == "/v1/payment_intents" {
        return filtered_intents(&p, &uri, &headers).await;
    }
    let fault = p.next_fault(&line);
    let record = |forwarded: bool| {
        p.seen.lock().unwrap().push(Seen {
            method: method.to_string(),
            path: path.clone(),
            key: key.clone(),
            forwarded,
        })
    };
    match fault {
        Some(Fault::CutBefore) => {
            record(false);
            return cut();
        }
        Some(Fault::Error500) => {
            record(false);
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"error": {"type": "api_error", "message": "injected"}})),
            )
                .into_response();
        }
        Some(Fault::Unauthorized) => {
            record(false);
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}})),
            )
                .into_response();
        }
        Some(Fault::HangBefore) => {
            record(false);
            tokio::time::sleep(HANG).await;
            return cut();
        }
        Some(Fault::TooMany) => {
            record(false);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                axum::Json(json!({"error": {"type": "rate_limit_error", "message": "injected"}})),
            )
                .into_response();
        }
        _ => {}
    }
    let replay_key = key
        .as_ref()
        .filter(|_| method == Method::POST)
        .map(|k| format!("{k} {line}"));
    let cached = replay_key
        .as_ref()
        .and_then(|k| p.replays.lock().unwrap().get(k).cloned());
    let replayed = cached.is_some();
    let (status, answer) = match cached {
        Some((status, answer)) => {
            record(false);
            (status, answer)
        }
        None => {
            record(true);
            let mut req = p
                .http
                .request(
                    method.clone(),
                    format!(
                        "{}{}",
                        p.upstream,
                        uri.path_and_query().map(|x| x.as_str()).unwrap_or("")
                    ),
                )
                .body(body);
            for (name, value) in headers.iter() {
                if name != "host" && name != "content-length" {
                    req = req.header(name, value);
                }
            }
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let answer = res.bytes().await.unwrap();
            if let Some(k) = &replay_key {
                if status < 500 {
                    p.replays
                        .lock()
                        .unwrap()
                        .insert(k.clone(), (status, answer.clone()));
                }
            }
            (status, answer)
        }
    };
    match fault {
        Some(Fault::SlowAfter) => tokio::time::sleep(Duration::from_millis(2500)).await,
        Some(Fault::HangAfter) => tokio::time::sleep(HANG).await,
        Some(Fault::CutAfter) => return cut(),
        _ => {}
    }
    let mut r = (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        answer,
    )
        .into_response();
    if replayed {
        r.headers_mut()
            .insert("idempotent-replayed", "true".parse().unwrap());
    }
    r
}

/// The payment a provider error names (`… (payment payment_…)`).
fn payment_named(body: &serde_json::Value) -> String {
    let m = body["error"]["message"].as_str().unwrap_or_default();
    let id = m
        .rsplit_once("(payment ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no payment named in {body}"));
    id.to_owned()
}

/// `GET /v1/payment_intents` with Stripe's filters, over localstripe's unfiltered list.
async fn filtered_intents(p: &Proxy, uri: &Uri, headers: &HeaderMap) -> Response {
    let url = reqwest::Url::parse(&format!("http://proxy{uri}")).unwrap();
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let mut upstream = format!("{}/v1/payment_intents?limit=100", p.upstream);
    if let Some(after) = q.get("starting_after") {
        upstream.push_str(&format!("&starting_after={after}"));
    }
    let mut req = p.http.get(upstream);
    if let Some(auth) = headers.get("authorization") {
        req = req.header("authorization", auth);
    }
    let res = req.send().await.unwrap();
    let status = StatusCode::from_u16(res.status().as_u16()).unwrap();
    let mut page: serde_json::Value = res.json().await.unwrap();
    let bound = |k: &str| q.get(k).map(|v| v.parse::<i64>().unwrap());
    let (from, to) = (bound("created[gte]"), bound("created[lte]"));
    if let Some(data) = page["data"].as_array_mut() {
        data.retain(|pi| {
            let created = pi["created"].as_i64().unwrap_or(0);
            q.get("customer")
                .is_none_or(|c| pi["customer"] == c.as_str())
                && from.is_none_or(|f| created >= f)
                && to.is_none_or(|t| created <= t)
        });
    }
    p.seen.lock().unwrap().push(Seen {
        method: "GET".into(),
        path: "/v1/payment_intents".into(),
        key: None,
        forwarded: true,
    });
    (status, axum::Json(page)).into_response()
}

async fn stripe_app(s: &Server) -> AppKeys {
    let a = s.app("test").await;
    let r = s
        .put("/v1/payment_config", &a.admin, json!({"provider": "stripe", "provider_public_key": "pk_test_faults", "provider_secret_key": "sk_test_faults"}))
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    s.put(
        "/v1/payment_config/signing_secret",
        &a.admin,
        json!({"signing_secret": "whsec_faults_000000"}),
    )
    .await;
    a
}

/// Every attempt of one operation carried one key, and at most one reached the provider.
fn once(proxy: &Proxy, method: &str, path: &str, what: &str) -> usize {
    let seen = proxy.seen(method, path);
    assert!(!seen.is_empty(), "{what}: no request to {method} {path}");
    let keys: std::collections::HashSet<_> = seen.iter().map(|s| s.key.clone()).collect();
    assert_eq!(
        keys.len(),
        1,
        "{what}: retries must reuse the idempotency key: {seen:?}"
    );
    let forwarded = seen.iter().filter(|s| s.forwarded).count();
    assert!(
        forwarded <= 1,
        "{what}: the provider acted {forwarded} times: {seen:?}"
    );
    seen.len()
}

async fn charges_captures_and_refunds_survive_provider_faults_once_each(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let ls = LocalStripe::start().await;
    let (proxy, base) = Proxy::start(&ls.base).await;
    let s = Server::start_with(
        &db,
        &[
            ("PAYBRIDGE_STRIPE_API_BASE", &base),
            ("PAYBRIDGE_STRIPE_TIMEOUT", "1"),
            ("PAYBRIDGE_STRIPE_RETRY_BASE_MS", "20"),
            ("PAYBRIDGE_STRIPE_MAX_RETRIES", "3"),
            ("PAYBRIDGE_RECONCILE_AFTER", "0"),
            ("PAYBRIDGE_RECONCILE_INTERVAL", "1"),
        ],
    )
    .await;
    let a = stripe_app(&s).await;
    let c = s
        .post("/v1/customers", &a.server, json!({"external_id": "faulty"}))
        .await;
    let cid = c.json["id"].as_str().unwrap().to_owned();
    let card = s
        .post(
            &format!("/v1/customers/{cid}/payment_methods"),
            &a.server,
            json!({"payment_method": "pm_card_visa"}),
        )
        .await;
    assert!(card.status.is_success(), "{}", card.body);
    let charge = |amount: i64, capture: &str| {
        let s = &s;
        let (server, cid) = (a.server.clone(), cid.clone());
        let capture = capture.to_owned();
        async move {
            s.post("/v1/payments", &server, json!({"amount": amount, "currency": "usd", "method": "card", "customer": cid, "capture": capture}))
                .await
        }
    };

    // 1. The charge happens, but its answer comes too late: the retry gets the same
    //    answer back, and there is one payment intent.
    proxy.clear();
    proxy.inject("POST /v1/payment_intents", &[Fault::SlowAfter]);
    let p = charge(2000, "automatic").await;
    assert_eq!(p.json["status"], "succeeded", "{}", p.body);
    assert_eq!(
        once(&proxy, "POST", "/v1/payment_intents", "slow charge"),
        2
    );

    // 2. Cut after acting, then a 500, then a 429: still one charge, and paid.
    proxy.clear();
    proxy.inject(
        "POST /v1/payment_intents",
        &[Fault::CutAfter, Fault::Error500, Fault::TooMany],
    );
    let p = charge(2100, "automatic").await;
    assert_eq!(p.json["status"], "succeeded", "{}", p.body);
    assert_eq!(once(&proxy, "POST", "/v1/payment_intents", "cut charge"), 4);

    // 3. The provider never answers well: a clear error, and no charge at all.
    proxy.clear();
    proxy.inject(
        "POST /v1/payment_intents",
        &[
            Fault::Error500,
            Fault::CutBefore,
            Fault::Error500,
            Fault::Error500,
        ],
    );
    let p = charge(2200, "automatic").await;
    assert_eq!(p.status, StatusCode::BAD_GATEWAY, "{}", p.body);
    let (kind, _, _) = p.error();
    assert_eq!(kind, "provider_error");
    let seen = proxy.seen("POST", "/v1/payment_intents");
    assert_eq!(seen.len(), 4, "the first try and three retries");
    assert!(
        seen.iter().all(|s| !s.forwarded),
        "no charge reached the provider"
    );
    //    The payment is pending with nothing to ask the provider about. The reconciler
    //    looks for an intent made for it, finds none, and fails it, which frees its
    //    order for another payment.
    let never = payment_named(&p.json);
    let failed = s
        .until(&format!("/v1/payments/{never}"), &a.server, |j| {
            j["status"] != "pending"
        })
        .await;
    assert_eq!(
        (
            failed["status"].as_str(),
            failed["failure"]["code"].as_str()
        ),
        (Some("failed"), Some("provider_unavailable")),
        "{failed}"
    );
    assert!(
        proxy
            .seen("POST", "/v1/payment_intents")
            .iter()
            .all(|s| !s.forwarded),
        "the reconciler looked, and did not charge"
    );

    // 3b. The charge happens, but every answer is lost: pending at first; then the
    //     reconciler finds the intent by the payment's id, and it is paid, once.
    proxy.clear();
    proxy.inject("POST /v1/payment_intents", &[Fault::CutAfter; 4]);
    let p = charge(2300, "automatic").await;
    assert_eq!(p.status, StatusCode::BAD_GATEWAY, "{}", p.body);
    let lost = payment_named(&p.json);
    let found = s
        .until(&format!("/v1/payments/{lost}"), &a.server, |j| {
            j["status"] == "succeeded"
        })
        .await;
    assert_eq!(found["amount_captured"], 2300, "{found}");
    assert!(found["provider"]["payment_intent"].is_string(), "{found}");
    assert_eq!(
        once(&proxy, "POST", "/v1/payment_intents", "lost answers"),
        4
    );

    // 3c. The same for an intent made for the app's own card form: found, and its
    //     client secret kept for the server key, as if the create had answered.
    proxy.clear();
    proxy.inject("POST /v1/payment_intents", &[Fault::CutAfter; 4]);
    let p = s
        .post(
            "/v1/payments",
            &a.server,
            json!({"amount": 2400, "currency": "usd", "method": "payment_intent"}),
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_GATEWAY, "{}", p.body);
    let lost = payment_named(&p.json);
    let found = s
        .until(&format!("/v1/payments/{lost}"), &a.server, |j| {
            j["provider"]["payment_intent"].is_string()
        })
        .await;
    let pi = found["provider"]["payment_intent"].as_str().unwrap();
    assert!(
        found["client_secret"]
            .as_str()
            .is_some_and(|c| c.starts_with(&format!("{pi}_secret"))),
        "{found}"
    );
    assert_eq!(
        once(
            &proxy,
            "POST",
            "/v1/payment_intents",
            "lost answers, card form"
        ),
        4
    );

    // 4. A manual capture whose answer is cut after the capture: captured once.
    let p = charge(3000, "manual").await;
    assert_eq!(p.json["status"], "requires_capture", "{}", p.body);
    let pid = p.json["id"].as_str().unwrap().to_owned();
    let pi = p.json["provider"]["payment_intent"]
        .as_str()
        .unwrap()
        .to_owned();
    proxy.clear();
    let capture_path = format!("/v1/payment_intents/{pi}/capture");
    proxy.inject(
        &format!("POST {capture_path}"),
        &[Fault::CutAfter, Fault::SlowAfter],
    );
    let cap = s
        .post(&format!("/v1/payments/{pid}/capture"), &a.server, json!({}))
        .await;
    assert_eq!(cap.status, StatusCode::OK, "{}", cap.body);
    assert_eq!(
        (
            cap.json["status"].as_str(),
            cap.json["amount_captured"].as_i64()
        ),
        (Some("succeeded"), Some(3000))
    );
    assert_eq!(once(&proxy, "POST", &capture_path, "capture"), 3);

    // 5. A refund whose answers are lost twice: refunded once, for the right amount.
    proxy.clear();
    proxy.inject("POST /v1/refunds", &[Fault::SlowAfter, Fault::CutAfter]);
    let r = s
        .post(
            "/v1/refunds",
            &a.admin,
            json!({"payment": pid, "amount": 1200}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json["status"], "succeeded", "{}", r.body);
    // (The reconciler, which runs every second here, may ask once more: same key.)
    assert!(once(&proxy, "POST", "/v1/refunds", "refund") >= 3);

    // 6. A refund the provider does not take now: its outcome is unknown, so it is
    //    answered `pending` with its amount held (no second refund can take it), and
    //    the reconciler settles it later with the same key: refunded once. Its first
    //    two tries are refused with 401 (a key being rotated): that says nothing of
    //    the refund, so it stays pending and held rather than failed and released.
    proxy.clear();
    proxy.inject(
        "POST /v1/refunds",
        &[
            Fault::Error500,
            Fault::Error500,
            Fault::Error500,
            Fault::Error500,
            Fault::Unauthorized,
            Fault::Unauthorized,
        ],
    );
    let r = s
        .post(
            "/v1/refunds",
            &a.admin,
            json!({"payment": pid, "amount": 1800}),
        )
        .await;
    assert_eq!(
        (r.status, r.json["status"].as_str()),
        (StatusCode::CREATED, Some("pending")),
        "{}",
        r.body
    );
    let rid = r.json["id"].as_str().unwrap().to_owned();
    assert!(proxy
        .seen("POST", "/v1/refunds")
        .iter()
        .all(|s| !s.forwarded));
    let more = s
        .post(
            "/v1/refunds",
            &a.admin,
            json!({"payment": pid, "amount": 1}),
        )
        .await;
    assert_eq!(
        more.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the held amount is not refundable twice: {}",
        more.body
    );
    let settled = s
        .until(&format!("/v1/refunds/{rid}"), &a.admin, |j| {
            j["status"] == "succeeded"
        })
        .await;
    assert_eq!(settled["amount"], 1800);
    once(&proxy, "POST", "/v1/refunds", "reconciled refund");
    let after = s.get(&format!("/v1/payments/{pid}"), &a.server).await;
    assert_eq!(
        (
            after.json["amount_refunded"].as_i64(),
            after.json["status"].as_str()
        ),
        (Some(3000), Some("refunded"))
    );
}

/// The server dies while two charges wait for the provider: one the provider made, one
/// it never saw. Both payments are left `initiated`, with no provider id. After a
/// restart the reconciler looks for each by its id: the one made is recorded and paid,
/// the other fails and frees its order. Nothing is charged twice.
async fn charges_cut_off_by_a_crash_are_settled_by_the_reconciler(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let ls = LocalStripe::start().await;
    let (proxy, base) = Proxy::start(&ls.base).await;
    let mut s = Server::start_with(
        &db,
        &[
            ("PAYBRIDGE_STRIPE_API_BASE", &base),
            ("PAYBRIDGE_STRIPE_TIMEOUT", "30"),
            ("PAYBRIDGE_RECONCILE_INITIATED_AFTER", "6"),
            ("PAYBRIDGE_RECONCILE_INTERVAL", "1"),
        ],
    )
    .await;
    let a = stripe_app(&s).await;
    let c = s
        .post(
            "/v1/customers",
            &a.server,
            json!({"external_id": "crashed"}),
        )
        .await;
    let cid = c.json["id"].as_str().unwrap().to_owned();
    let card = s
        .post(
            &format!("/v1/customers/{cid}/payment_methods"),
            &a.server,
            json!({"payment_method": "pm_card_visa"}),
        )
        .await;
    assert!(card.status.is_success(), "{}", card.body);

    proxy.clear();
    proxy.inject(
        "POST /v1/payment_intents",
        &[Fault::HangAfter, Fault::HangBefore],
    );
    let url = s.url("/v1/payments");
    for amount in [2400, 2500] {
        let (url, key, cid) = (url.clone(), a.server.clone(), cid.clone());
        tokio::spawn(async move {
            let _ = reqwest::Client::new()
                .post(url)
                .bearer_auth(key)
                .json(&json!({"amount": amount, "currency": "usd", "method": "card", "customer": cid}))
                .send()
                .await;
        });
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while proxy.seen("POST", "/v1/payment_intents").len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the charges never reached the proxy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.restart().await;

    let list = s.get("/v1/payments?limit=10", &a.server).await;
    let ids: Vec<String> = list.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "{}", list.body);
    // Until the reconciler has found out, neither can be cancelled: that would only
    // drop our record of a charge the provider may have made.
    for id in &ids {
        let r = s
            .post(&format!("/v1/payments/{id}/cancel"), &a.server, json!({}))
            .await;
        assert_eq!(
            (r.status, r.error().1.as_str()),
            (StatusCode::CONFLICT, "payment_in_flight"),
            "{}",
            r.body
        );
    }
    let mut settled = Vec::new();
    for id in &ids {
        let p = s
            .until(&format!("/v1/payments/{id}"), &a.server, |j| {
                !matches!(j["status"].as_str(), Some("initiated" | "pending"))
            })
            .await;
        settled.push(p);
    }
    settled.sort_by_key(|p| p["status"].as_str().map(str::to_owned));
    let made = proxy
        .seen("POST", "/v1/payment_intents")
        .iter()
        .filter(|s| s.forwarded)
        .count();
    assert_eq!(made, 1, "the provider made one intent");
    assert_eq!(settled[0]["status"], "failed", "{}", settled[0]);
    assert_eq!(settled[0]["failure"]["code"], "provider_unavailable");
    assert_eq!(settled[1]["status"], "succeeded", "{}", settled[1]);
    assert!(settled[1]["provider"]["payment_intent"].is_string());
    assert_eq!(
        proxy.seen("POST", "/v1/payment_intents").len(),
        2,
        "the reconciler looked; it did not charge again"
    );
}
