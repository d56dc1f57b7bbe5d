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

paybridge_testkit::on_both!(charges_captures_and_refunds_survive_provider_faults_once_each,);

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
}

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
    //    the reconciler settles it later with the same key: refunded once.
    proxy.clear();
    proxy.inject("POST /v1/refunds", &[Fault::Error500; 4]);
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
