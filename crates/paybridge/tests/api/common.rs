//! The test harness: a throwaway database (a temporary SQLite file, or a fresh
//! PostgreSQL database dropped afterwards), the real `paybridge` binary started on a
//! random port, and a small JSON client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

pub use paybridge_testkit::{random_suffix, Backend, TestDb};

/// A running `paybridge serve`.
pub struct Server {
    pub base: String,
    pub root: String,
    pub db_url: String,
    pub stdout: Arc<Mutex<String>>,
    pub log_path: PathBuf,
    child: Option<Child>,
    env: Vec<(String, String)>,
    workdir: PathBuf,
    master_key: String,
    pub http: reqwest::Client,
}

pub const ROOT_KEY_LEN: usize = 24;

impl Server {
    pub async fn start(db: &TestDb) -> Server {
        Server::start_with(db, &[]).await
    }

    /// Starts a server on `db` with extra environment (`PAYBRIDGE_*` overrides).
    pub async fn start_with(db: &TestDb, env: &[(&str, &str)]) -> Server {
        let root = format!("pb_root_test_{}", random_suffix()) + &random_suffix();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut s = Server {
            base: String::new(),
            root,
            db_url: db.url.clone(),
            stdout: Arc::new(Mutex::new(String::new())),
            log_path: db
                .dir
                .path()
                .join(format!("server-{}.log", random_suffix())),
            child: None,
            env,
            workdir: db.dir.path().to_path_buf(),
            master_key: db.master_key.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        s.spawn(None).await;
        s
    }

    fn command(&self, listen: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_paybridge"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(listen)
            .arg("--database-url")
            .arg(&self.db_url)
            .current_dir(&self.workdir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PAYBRIDGE_ROOT_KEY", &self.root)
            .env("PAYBRIDGE_NO_DEMO", "true")
            // The catch-up worker polls Stripe's event list; tests of it turn it on.
            .env("PAYBRIDGE_EVENT_SYNC_INTERVAL", "0")
            .env("PAYBRIDGE_LOG", "info,sqlx=warn")
            .env("RUST_BACKTRACE", "1");
        if self.db_url.starts_with("postgres") {
            cmd.env("PAYBRIDGE_MASTER_KEY", &self.master_key);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    async fn spawn(&mut self, listen: Option<String>) {
        let listen = listen.unwrap_or_else(|| "127.0.0.1:0".into());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let mut child = self
            .command(&listen)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start paybridge");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let buf = self.stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                buf.lock().unwrap().push_str(&line);
                buf.lock().unwrap().push('\n');
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let base = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        break rest.trim().to_owned();
                    }
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!(
                            "paybridge exited ({status}) before listening:\n{}",
                            self.logs()
                        );
                    }
                    if std::time::Instant::now() > deadline {
                        panic!("paybridge did not start in time:\n{}", self.logs());
                    }
                }
            }
        };
        self.base = base;
        self.child = Some(child);
    }

    /// The server's log output so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn banner(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// `kill -9`: no shutdown, no flush, nothing finished.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit; returns whether it exited cleanly in time.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            if std::time::Instant::now() > deadline {
                let _ = c.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the process again on the same database and port.
    pub async fn restart(&mut self) {
        self.kill9();
        let listen = self.base.trim_start_matches("http://").to_owned();
        self.spawn(Some(listen)).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        self.call_with(method, path, key, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.http.request(method, self.url(path));
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

    pub async fn get(&self, path: &str, key: &str) -> Resp {
        self.call(Method::GET, path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(key), Some(body)).await
    }

    pub async fn put(&self, path: &str, key: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(key), Some(body)).await
    }

    pub async fn patch(&self, path: &str, key: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(key), Some(body)).await
    }

    pub async fn delete(&self, path: &str, key: &str) -> Resp {
        self.call(Method::DELETE, path, Some(key), None).await
    }

    /// The server's OpenAPI document (`GET /openapi.json`, no key).
    pub async fn openapi(&self) -> Value {
        let r = self.call(Method::GET, "/openapi.json", None, None).await;
        assert_eq!(r.status, StatusCode::OK, "/openapi.json: {}", r.body);
        r.json
    }

    /// Creates an app with the root key and returns its keys.
    pub async fn app(&self, environment: &str) -> AppKeys {
        let r = self
            .post(
                "/v1/apps",
                &self.root,
                serde_json::json!({"name": "test app", "environment": environment}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        AppKeys {
            id: r.json["id"].as_str().unwrap().to_owned(),
            admin: r.json["keys"]["admin"].as_str().unwrap().to_owned(),
            server: r.json["keys"]["server"].as_str().unwrap().to_owned(),
            publishable: r.json["keys"]["publishable"].as_str().unwrap().to_owned(),
        }
    }
}

impl Server {
    /// An app on the sandbox provider, ready to take payments.
    pub async fn sandbox_app(&self) -> AppKeys {
        let a = self.app("test").await;
        let r = self
            .put(
                "/v1/payment_config",
                &a.admin,
                serde_json::json!({"provider": "sandbox"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.json["configured"], true);
        a
    }

    pub async fn product(&self, admin: &str, name: &str, amount: i64, currency: &str) -> String {
        let r = self
            .post(
                "/v1/products",
                admin,
                serde_json::json!({"name": name, "unit_amount": amount, "currency": currency}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.json["id"].as_str().unwrap().to_owned()
    }

    /// A customer with `pm_card_visa` saved as its default card; returns its id.
    pub async fn customer_with_card(&self, server: &str, external_id: &str) -> String {
        let c = self
            .post(
                "/v1/customers",
                server,
                serde_json::json!({"external_id": external_id}),
            )
            .await;
        assert!(c.status.is_success(), "{}", c.body);
        let cid = c.json["id"].as_str().unwrap().to_owned();
        let card = self
            .post(
                &format!("/v1/customers/{cid}/payment_methods"),
                server,
                serde_json::json!({"payment_method": "pm_card_visa"}),
            )
            .await;
        assert!(card.status.is_success(), "{}", card.body);
        cid
    }

    /// Starts a checkout for one product; returns the checkout's JSON.
    /// Pays a sandbox checkout with a test card, as its page does.
    pub async fn complete_checkout(&self, key: &str, checkout: &Value, card: &str) -> Resp {
        self.post(
            &format!(
                "/v1/sandbox/checkout_sessions/{}/complete",
                checkout["id"].as_str().unwrap()
            ),
            key,
            serde_json::json!({ "card_number": card }),
        )
        .await
    }

    pub async fn checkout(&self, key: &str, product: &str, quantity: i64, extra: Value) -> Value {
        let mut body = serde_json::json!({
            "line_items": [{"product": product, "quantity": quantity}],
            "success_url": "https://shop.example/thanks?session={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://shop.example/cart",
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let r = self.post("/v1/checkout/sessions", key, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.json
    }

    /// Polls `path` until `done` holds of its JSON, for up to 15 s; returns the last JSON.
    pub async fn until(&self, path: &str, key: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let r = self.get(path, key).await;
            if done(&r.json) {
                return r.json;
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "{path} never got there; last: {}\nlogs:\n{}",
                    r.body,
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The types of the app's events about an object, oldest first.
    pub async fn event_types(&self, key: &str, filter: &str) -> Vec<String> {
        let r = self
            .get(&format!("/v1/events?limit=100&{filter}"), key)
            .await;
        let mut v: Vec<String> = r.json["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect();
        v.reverse();
        v
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[derive(Debug, Clone)]
pub struct AppKeys {
    pub id: String,
    pub admin: String,
    pub server: String,
    pub publishable: String,
}

#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    pub json: Value,
}

impl Resp {
    pub async fn from(r: reqwest::Response) -> Resp {
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.text().await.unwrap_or_default();
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            json,
        }
    }

    /// Asserts the one error shape and returns (type, code, param).
    pub fn error(&self) -> (String, String, Option<String>) {
        let e = &self.json["error"];
        assert!(
            e.is_object(),
            "not an error body ({}): {}",
            self.status,
            self.body
        );
        let s = |k: &str| e[k].as_str().map(str::to_owned);
        assert!(
            s("message").is_some_and(|m| !m.is_empty()),
            "error without message: {}",
            self.body
        );
        (s("type").unwrap(), s("code").unwrap(), s("param"))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// A callback receiver (`crates/testkit/receiver.py`) that checks every delivery with
/// the official `standardwebhooks` library and records it. It can be stopped and
/// started again on the same port (a receiver that is down for a while).
pub struct Receiver {
    pub port: u16,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let mut r = Receiver {
            port: 0,
            child: None,
            http: reqwest::Client::new(),
        };
        r.spawn(&serde_json::json!({})).await;
        r
    }

    async fn spawn(&mut self, control: &Value) {
        let script = paybridge_testkit::repo_root().join("crates/testkit/receiver.py");
        let mut child = Command::new(paybridge_testkit::venv_bin("python"))
            .arg(script)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--control")
            .arg(control.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("receiver output");
        self.port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("receiver said {line:?}"));
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    /// Stops it (`kill -9`); its port stays reserved for [`Receiver::resume`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, with a fresh record and `control` in force
    /// before it accepts the first connection (a delivery that arrived between the
    /// start and a later `/_control` call would be checked against no secret).
    pub async fn resume(&mut self, control: Value) {
        self.stop();
        self.spawn(&control).await;
    }

    pub async fn control(&self, body: Value) {
        let r = self
            .http
            .post(format!("http://127.0.0.1:{}/_control", self.port))
            .json(&body)
            .send()
            .await
            .expect("receiver control");
        assert!(r.status().is_success());
    }

    /// Every request it got, in arrival order.
    pub async fn received(&self) -> Vec<Value> {
        self.http
            .get(format!("http://127.0.0.1:{}/_received", self.port))
            .send()
            .await
            .expect("receiver")
            .json()
            .await
            .expect("receiver json")
    }

    /// Waits (up to `secs`) until `done` holds of what it received; returns that.
    pub async fn until(&self, secs: u64, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.received().await;
            if done(&got) {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the receiver never got there; it has {} requests: {:#?}",
                got.len(),
                got.iter().rev().take(5).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A server-sent events reader: `(id, data)` of each message, in order.
pub struct Sse {
    resp: reqwest::Response,
    buf: String,
    /// Keep-alive comments seen so far.
    pub comments: usize,
    /// The server's log, shown when an awaited message never comes.
    log_path: PathBuf,
}

impl Sse {
    /// Opens `path` with `key` (and a `Last-Event-ID` if given); asserts a 200.
    pub async fn open(s: &Server, path: &str, key: &str, last_event_id: Option<&str>) -> Sse {
        let mut req = s.http.get(s.url(path)).bearer_auth(key);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.expect("open stream");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Sse {
            resp,
            buf: String::new(),
            comments: 0,
            log_path: s.log_path.clone(),
        }
    }

    /// The next message, or `None` if none comes within `secs`.
    pub async fn next(&mut self, secs: u64) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut id = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                match id {
                    Some(id) => {
                        return Some((id, serde_json::from_str(&data).expect("event json")))
                    }
                    None => {
                        self.comments += block.lines().filter(|l| l.starts_with(':')).count();
                        continue;
                    }
                }
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Ok(Ok(Some(c))) => self.buf.push_str(&String::from_utf8_lossy(&c)),
                _ => return None,
            }
        }
    }

    /// The next `n` messages, each within `secs`; panics with what came if one does not.
    pub async fn take(&mut self, n: usize, secs: u64) -> Vec<(String, Value)> {
        let mut got = Vec::new();
        while got.len() < n {
            match self.next(secs).await {
                Some(m) => got.push(m),
                None => panic!(
                    "{} of {n} messages came: {:?}",
                    got.len(),
                    got.iter().map(|m| m.1["type"].clone()).collect::<Vec<_>>()
                ),
            }
        }
        got
    }

    /// Reads messages until one of type `kind` (within `secs`); returns all read.
    pub async fn until_type(&mut self, kind: &str, secs: u64) -> Vec<(String, Value)> {
        match self.try_until_type(kind, secs).await {
            Ok(got) => got,
            Err(why) => panic!("{why}"),
        }
    }

    /// As [`Sse::until_type`], with what went wrong (and the server's log) as the error.
    pub async fn try_until_type(
        &mut self,
        kind: &str,
        secs: u64,
    ) -> Result<Vec<(String, Value)>, String> {
        let mut got = Vec::new();
        while let Some(m) = self.next(secs).await {
            let done = m.1["type"] == kind;
            got.push(m);
            if done {
                return Ok(got);
            }
        }
        Err(format!(
            "no {kind} on the stream; got {:?}\nserver logs:\n{}",
            got.iter().map(|m| m.1["type"].clone()).collect::<Vec<_>>(),
            std::fs::read_to_string(&self.log_path).unwrap_or_default()
        ))
    }
}
