//! A recording stand-in for the Stripe API, for what localstripe does not have
//! (Checkout Sessions, Prices, Connect) and for faults: it records every request
//! paybridge sends (method, path, headers, the decoded form) and answers with what the
//! test's responder says, shaped from Stripe's published example objects.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: BTreeMap<String, String>,
    pub form: Vec<(String, String)>,
}

impl Recorded {
    pub fn form_get(&self, key: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

pub type Responder = Arc<dyn Fn(&Recorded, usize) -> (u16, Value) + Send + Sync>;

#[derive(Clone)]
struct Shared {
    log: Arc<Mutex<Vec<Recorded>>>,
    responder: Responder,
}

pub struct Stub {
    pub base: String,
    log: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Stub {
    /// `responder(request, n)` answers the n-th request (0-based) to the same method and path.
    pub async fn start(
        responder: impl Fn(&Recorded, usize) -> (u16, Value) + Send + Sync + 'static,
    ) -> Stub {
        let shared = Shared {
            log: Arc::new(Mutex::new(Vec::new())),
            responder: Arc::new(responder),
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Stub {
            base,
            log: shared.log,
            task,
        }
    }

    pub fn calls(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let rec = Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        form: form_urlencoded::parse(&body).into_owned().collect(),
    };
    let n = {
        let mut log = s.log.lock().unwrap();
        let n = log
            .iter()
            .filter(|r| r.method == rec.method && r.path == rec.path)
            .count();
        log.push(rec.clone());
        n
    };
    let (status, mut body) = (s.responder)(&rec, n);
    // A responder may ask for a slow answer: `"__delay_ms": n` in its body.
    if let Some(ms) = body.get("__delay_ms").and_then(|v| v.as_u64()) {
        body.as_object_mut().unwrap().remove("__delay_ms");
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    (StatusCode::from_u16(status).unwrap(), axum::Json(body))
}

/// One of Stripe's published example objects (`checkout.session`, `payment_intent`, …)
/// with `fields` laid over it.
pub fn fixture(kind: &str, fields: Value) -> Value {
    static FIXTURES: &str = include_str!("../../../provider/fixtures/stripe_objects.json");
    let all: Value = serde_json::from_str(FIXTURES).unwrap();
    let mut v = all[kind].clone();
    assert!(v.is_object(), "no fixture for {kind}");
    for (k, x) in fields.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

pub fn stripe_error(kind: &str, code: &str, message: &str) -> Value {
    json!({"error": {"type": kind, "code": code, "message": message}})
}
