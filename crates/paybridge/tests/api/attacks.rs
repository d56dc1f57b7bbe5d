//! The attacks of issue 13 that live at the edge of the server (the HTTP layer, the
//! listener, the budgets), each as an attacker would try it and with what it gets now.
//! docs/SECURITY.md says why each answer is what it is. (The attacks on what a key may
//! do with the app's objects are in `attacks_app.rs`.)
//!
//! Addresses: every request here comes from loopback, and Linux routes all of
//! 127.0.0.0/8 there, so a client bound to 127.0.0.2 is "another address" to the
//! server's per-address budgets.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Backend, Resp, Server, Sse, TestDb};

paybridge_testkit::on_both!(
    idempotent_replays_stay_with_the_key_that_made_them,
    made_up_methods_and_long_paths_leave_metrics_and_logs_bounded,
    slow_headers_idle_connections_and_the_connection_cap,
    event_streams_are_capped_per_key,
    rate_limits_answer_429_with_retry_after,
    webhooks_have_an_app_budget_and_only_named_proxies_are_believed,
    bad_bytes_in_paths_and_queries_answer_in_the_error_shape,
);

/// A client whose connections come from `from` (a loopback address).
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn send(
    c: &reqwest::Client,
    s: &Server,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Resp {
    let mut req = c.request(method, s.url(path));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Resp::from(req.send().await.expect("request")).await
}

/// Asserts a 429 in the error shape with a `Retry-After` of at least one second.
fn assert_too_many(r: &Resp, code: &str) {
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    let (kind, got, _) = r.error();
    assert_eq!((kind.as_str(), got.as_str()), ("rate_limit_error", code));
    let after: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!(after >= 1, "Retry-After {after}");
}

async fn metrics(s: &Server) -> String {
    s.http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// 1. The admin key mints an admin key under an `Idempotency-Key`; the publishable
///    and server keys send the same request with the same key. They used to get the
///    stored 201, with the new admin key's secret in it.
async fn idempotent_replays_stay_with_the_key_that_made_them(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.app("test").await;
    let path = format!("/v1/apps/{}/keys", a.id);
    let mint = json!({"role": "admin"});
    let idem = [("idempotency-key", "mint-admin-1")];
    let first = s
        .call_with(
            Method::POST,
            &path,
            Some(&a.admin),
            Some(mint.clone()),
            &idem,
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let secret = first.json["secret"]
        .as_str()
        .expect("the new key's secret")
        .to_owned();
    for key in [&a.publishable, &a.server] {
        let r = s
            .call_with(Method::POST, &path, Some(key), Some(mint.clone()), &idem)
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        assert!(
            !r.body.contains(&secret),
            "the stored secret leaked: {}",
            r.body
        );
        assert!(r.header("idempotent-replayed").is_none());
    }
    // The same for a callback endpoint's signing secret.
    let hook = json!({"url": "https://app.example/hooks"});
    let idem = [("idempotency-key", "endpoint-1")];
    let made = s
        .call_with(
            Method::POST,
            "/v1/callback_endpoints",
            Some(&a.admin),
            Some(hook.clone()),
            &idem,
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let whsec = made.json["secret"].as_str().expect("whsec").to_owned();
    for key in [&a.publishable, &a.server] {
        let r = s
            .call_with(
                Method::POST,
                "/v1/callback_endpoints",
                Some(key),
                Some(hook.clone()),
                &idem,
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        assert!(
            !r.body.contains(&whsec),
            "the stored secret leaked: {}",
            r.body
        );
    }
    // Another admin key with the same Idempotency-Key makes its own request: no
    // replay, and no 422 that would tell it the key was used with another body.
    let second_admin = secret.clone();
    let other_body = json!({"url": "https://app.example/other"});
    let own = s
        .call_with(
            Method::POST,
            "/v1/callback_endpoints",
            Some(&second_admin),
            Some(other_body),
            &idem,
        )
        .await;
    assert_eq!(own.status, StatusCode::CREATED, "{}", own.body);
    assert_ne!(own.json["id"], made.json["id"]);
    assert!(own.header("idempotent-replayed").is_none());
    let same = s
        .call_with(
            Method::POST,
            "/v1/callback_endpoints",
            Some(&second_admin),
            Some(hook.clone()),
            &[("idempotency-key", "mint-admin-1")],
        )
        .await;
    assert_eq!(same.status, StatusCode::CREATED, "{}", same.body);
    // The key that made the request still gets its own answer back.
    let again = s
        .call_with(
            Method::POST,
            "/v1/callback_endpoints",
            Some(&a.admin),
            Some(hook),
            &idem,
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(again.json["id"], made.json["id"]);
    assert_eq!(again.json["secret"].as_str(), Some(whsec.as_str()));
}

/// 3. Requests with made-up 4 KB methods and 4 KB paths: each used to add its method
///    to `/metrics` and its method and path to a log line.
async fn made_up_methods_and_long_paths_leave_metrics_and_logs_bounded(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.app("test").await;
    s.get("/healthz", &a.admin).await;
    let before = metrics(&s).await.len();
    let log_before = s.logs().len();
    const N: usize = 150;
    const SIZE: usize = 4096;
    let mut longest_answer = 0;
    for i in 0..N {
        let method = format!("X{i:04}{}", "M".repeat(SIZE));
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let r = s.call(m, "/healthz", Some(&a.admin), None).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        longest_answer = longest_answer.max(r.body.len());
        let path = format!("/v1/{i}{}", "p".repeat(SIZE));
        let r = s.call(Method::GET, &path, Some(&a.admin), None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        longest_answer = longest_answer.max(r.body.len());
    }
    let m = metrics(&s).await;
    let grown = m.len() - before;
    assert!(
        grown < 4096,
        "/metrics grew by {grown} bytes for {N} made-up methods and paths"
    );
    assert!(
        m.contains(r#"method="other",route="/healthz",status="405""#),
        "{m}"
    );
    // Each request still gets its log line, but not the caller's 4 KB in it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let logged = loop {
        let logged = s.logs().len() - log_before;
        if logged > 0 || Instant::now() > deadline {
            break logged;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(logged > 0, "nothing was logged");
    assert!(
        logged < 2 * N * 1024,
        "the log grew by {logged} bytes for {} requests carrying {SIZE} bytes each",
        2 * N
    );
    // And the error messages cut what they echo.
    assert!(
        longest_answer < 1024,
        "an answer echoed the method or path: {longest_answer} bytes"
    );
}

fn address(s: &Server) -> String {
    s.base.trim_start_matches("http://").to_owned()
}

/// Whether the server closes `c` within `secs` (EOF or reset).
async fn closed_within(c: &mut TcpStream, secs: f64) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    loop {
        match tokio::time::timeout_at(deadline, c.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Sends one whole request and reads its whole answer (a `Content-Length` body).
async fn round_trip(c: &mut TcpStream) -> String {
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let n = tokio::time::timeout_at(deadline, c.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

/// 8. Clients that send half their headers, connections left open, and more
///    connections than the server may hold: all used to stay open for good.
async fn slow_headers_idle_connections_and_the_connection_cap(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start_with(
        &db,
        &[
            ("PAYBRIDGE_MAX_CONNECTIONS", "4"),
            ("PAYBRIDGE_HEADER_READ_TIMEOUT", "1"),
            ("PAYBRIDGE_KEEP_ALIVE_TIMEOUT", "3"),
        ],
    )
    .await;
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_millis(700))
            .build()
            .unwrap()
    };
    // Four slowloris connections take every place.
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut c = TcpStream::connect(address(&s)).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(c);
    }
    // A fifth client waits: it is not accepted while the four hold their places.
    let waited = fresh().get(s.url("/healthz")).send().await;
    assert!(
        waited.is_err(),
        "a fifth connection was served beside four open ones: {:?}",
        waited.map(|r| r.status())
    );
    // Each slow one is cut off once its headers are overdue (1 s), not later.
    for c in &mut slow {
        assert!(
            closed_within(c, 4.0).await,
            "a connection with half its headers was still open after {:?}",
            started.elapsed()
        );
    }
    // Then the server takes clients again.
    let ok = reqwest::Client::new()
        .get(s.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    drop(ok);

    // A kept-alive connection may wait longer than the header timeout between
    // requests, and is closed once idle for the keep-alive timeout (3 s).
    let mut c = TcpStream::connect(address(&s)).await.unwrap();
    assert!(round_trip(&mut c).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(round_trip(&mut c).await.starts_with("HTTP/1.1 200"));
    let idle = Instant::now();
    assert!(
        closed_within(&mut c, 6.0).await,
        "an idle connection stayed open"
    );
    let after = idle.elapsed();
    assert!(
        after >= Duration::from_millis(2500),
        "closed after {after:?} idle, before the keep-alive timeout"
    );
}

/// 8. A thousand event streams from one key used to be accepted.
async fn event_streams_are_capped_per_key(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start_with(&db, &[("PAYBRIDGE_MAX_STREAMS_PER_KEY", "3")]).await;
    let a = s.sandbox_app().await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(Sse::open(&s, "/v1/events/stream", &a.server, None).await);
    }
    let r = s.get("/v1/events/stream", &a.server).await;
    assert_too_many(&r, "too_many_streams");
    // Another key has its own places.
    let admin = Sse::open(&s, "/v1/events/stream", &a.admin, None).await;
    // A closed stream frees its place.
    open.pop();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = s
            .http
            .get(s.url("/v1/events/stream"))
            .bearer_auth(&a.server)
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed stream's place was not freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(admin);

    // Every storefront visitor holds the publishable key: its streams count per
    // client address.
    let product = s.product(&a.admin, "Widget", 1500, "usd").await;
    let order = s
        .post(
            "/v1/orders",
            &a.server,
            json!({"currency": "usd", "line_items": [{"product": product, "quantity": 1}]}),
        )
        .await;
    let path = format!(
        "/v1/orders/{}/stream?client_secret={}",
        order.json["id"].as_str().unwrap(),
        order.json["client_secret"].as_str().unwrap()
    );
    let mut visitors = Vec::new();
    for _ in 0..3 {
        visitors.push(Sse::open(&s, &path, &a.publishable, None).await);
    }
    assert_too_many(&s.get(&path, &a.publishable).await, "too_many_streams");
    let elsewhere = client_from("127.0.0.2")
        .get(s.url(&path))
        .bearer_auth(&a.publishable)
        .send()
        .await
        .unwrap();
    assert_eq!(
        elsewhere.status(),
        StatusCode::OK,
        "another address has its own places"
    );
    assert!(metrics(&s)
        .await
        .contains(r#"paybridge_rate_limited_total{class="streams"}"#));
}

/// 9. Eight clients with the publishable key made 572 checkouts in 5 s. Defaults here:
///    a storefront's normal use is far below them, a back end's key far above.
async fn rate_limits_answer_429_with_retry_after(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let product = s.product(&a.admin, "Widget", 1500, "usd").await;
    let checkout = json!({
        "line_items": [{"product": product, "quantity": 1}],
        "success_url": "https://shop.example/ok", "cancel_url": "https://shop.example/cart"
    });
    let attempts = futures::future::join_all((0..45).map(|_| {
        s.call(
            Method::POST,
            "/v1/checkout/sessions",
            Some(&a.publishable),
            Some(checkout.clone()),
        )
    }))
    .await;
    let made = attempts
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    let limited: Vec<&Resp> = attempts
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(
        made + limited.len(),
        45,
        "{:?}",
        attempts.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(made >= 30, "the burst of 30 was not honoured: {made}");
    assert!(!limited.is_empty(), "45 checkouts at once were all made");
    for r in &limited {
        assert_too_many(r, "rate_limited");
    }
    // The same key from another address has its own budget.
    let other = send(
        &client_from("127.0.0.2"),
        &s,
        Method::POST,
        "/v1/checkout/sessions",
        Some(&a.publishable),
        Some(checkout.clone()),
        &[],
    )
    .await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.body);
    // The app's own back end is not throttled by any of this.
    for chunk in 0..4 {
        let reads =
            futures::future::join_all((0..50).map(|_| s.get("/v1/products", &a.server))).await;
        assert!(
            reads.iter().all(|r| r.status == StatusCode::OK),
            "round {chunk}: a server key was throttled"
        );
    }
    // Anonymous callers (and refused keys) share their address's budget.
    let anon = client_from("127.0.0.3");
    let mut limited_anon = None;
    for _ in 0..150 {
        let r = send(&anon, &s, Method::GET, "/healthz", None, None, &[]).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited_anon = Some(r);
            break;
        }
        assert_eq!(r.status, StatusCode::OK);
    }
    assert_too_many(
        &limited_anon.expect("150 anonymous requests were all served"),
        "rate_limited",
    );
    // Key guesses from that address are refused by the same budget (it refills at
    // 20/s, so one of them may find a fresh token and get its 401).
    let mut guesses = Vec::new();
    for _ in 0..20 {
        guesses.push(
            send(
                &anon,
                &s,
                Method::GET,
                "/v1/products",
                Some("pb_sk_test_guessguessguessguessguessguess"),
                None,
                &[],
            )
            .await,
        );
    }
    let limited: Vec<&Resp> = guesses
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(
        limited.len() >= 15,
        "{} of 20 guesses limited",
        limited.len()
    );
    assert_too_many(limited[0], "rate_limited");
    let m = metrics(&s).await;
    assert!(
        m.contains(r#"paybridge_rate_limited_total{class="publishable_write"}"#),
        "{m}"
    );
    assert!(
        m.contains(r#"paybridge_rate_limited_total{class="anonymous"}"#),
        "{m}"
    );
}

/// 9. Stripe's webhooks come from a few addresses for all its accounts: they spend
///    their app's budget, not their address's. `X-Forwarded-For` is believed only from
///    a proxy the operator named.
async fn webhooks_have_an_app_budget_and_only_named_proxies_are_believed(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start_with(
        &db,
        &[
            ("PAYBRIDGE_RATE_LIMIT_WEBHOOK", "2,10"),
            ("PAYBRIDGE_RATE_LIMIT_ANONYMOUS", "2,10"),
            ("PAYBRIDGE_TRUSTED_PROXIES", "127.0.0.4"),
        ],
    )
    .await;
    let a = s.sandbox_app().await;
    let other = s.sandbox_app().await;
    let hook = |app: &str| format!("/v1/webhooks/stripe/{app}");
    let c = client_from("127.0.0.5");
    let mut statuses = Vec::new();
    for _ in 0..15 {
        let r = send(
            &c,
            &s,
            Method::POST,
            &hook(&a.id),
            None,
            Some(json!({})),
            &[],
        )
        .await;
        statuses.push(r.status);
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert_too_many(&r, "rate_limited");
        }
    }
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::BAD_REQUEST)
        .count();
    assert!((10..=12).contains(&refused), "{statuses:?}");
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // Its address spent nothing: the other app's URL and the address's own budget
    // are untouched.
    let r = send(
        &c,
        &s,
        Method::POST,
        &hook(&other.id),
        None,
        Some(json!({})),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = send(&c, &s, Method::GET, "/healthz", None, None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);

    // From anyone but the named proxy, X-Forwarded-For changes nothing.
    let stranger = client_from("127.0.0.6");
    let mut got = Vec::new();
    for i in 0..14 {
        let xff = format!("198.51.100.{i}");
        let r = send(
            &stranger,
            &s,
            Method::GET,
            "/healthz",
            None,
            None,
            &[("x-forwarded-for", &xff)],
        )
        .await;
        got.push(r.status);
    }
    assert!(got.contains(&StatusCode::TOO_MANY_REQUESTS), "{got:?}");
    // From the proxy, each forwarded client has its own budget.
    let proxy = client_from("127.0.0.4");
    for round in 0..12 {
        let r = send(
            &proxy,
            &s,
            Method::GET,
            "/healthz",
            None,
            None,
            &[("x-forwarded-for", "198.51.100.7")],
        )
        .await;
        if round >= 11 {
            assert_too_many(&r, "rate_limited");
        }
    }
    let r = send(
        &proxy,
        &s,
        Method::GET,
        "/healthz",
        None,
        None,
        &[("x-forwarded-for", "198.51.100.8")],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a forwarded client spent another's budget"
    );
}

/// 10. `GET /v1/payments/%FF` answered `text/plain`. Every path parameter of every
///     operation, and a query string, with bytes that are not UTF-8.
async fn bad_bytes_in_paths_and_queries_answer_in_the_error_shape(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.app("test").await;
    let r = s.get("/v1/payments/%FF", &a.admin).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let (_, code, param) = r.error();
    assert_eq!(
        (code.as_str(), param.as_deref()),
        ("parameter_invalid", Some("id"))
    );
    let doc = s.openapi().await;
    let mut checked = 0;
    for (template, ops) in doc["paths"].as_object().unwrap() {
        if !template.contains('{') {
            continue;
        }
        for (method, _) in ops.as_object().unwrap() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let path: String = template
                .split('/')
                .map(|seg| if seg.starts_with('{') { "%FF%FE" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            let body = matches!(m, Method::POST | Method::PUT | Method::PATCH).then(|| json!({}));
            for key in [Some(a.admin.as_str()), None] {
                let r = s.call(m.clone(), &path, key, body.clone()).await;
                assert!(
                    r.status.is_client_error(),
                    "{method} {path}: {} {}",
                    r.status,
                    r.body
                );
                assert_eq!(
                    r.header("content-type").as_deref(),
                    Some("application/json"),
                    "{method} {path}: {}",
                    r.body
                );
                r.error();
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 30,
        "only {checked} operations with path parameters"
    );
    // The sandbox's checkout page is not in the document, and is checked too.
    let r = s
        .call(Method::GET, "/sandbox/pay/%FF/%FF", None, None)
        .await;
    assert!(r.status.is_client_error());
    r.error();
    // A query value that is not UTF-8 is read as text and refused as a bad value.
    let r = s.get("/v1/payments?limit=%FF", &a.admin).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.error().2.as_deref(), Some("limit"));
}
