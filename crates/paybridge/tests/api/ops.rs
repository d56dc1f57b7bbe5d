//! Operations: health, readiness, metrics, the OpenAPI document and its page, request
//! ids and JSON logs, graceful shutdown, the first start's demo app, and the CLI.

use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{Backend, Server, TestDb};

paybridge_testkit::on_both!(
    health_metrics_and_openapi,
    request_ids_json_logs_and_graceful_shutdown,
    first_start_creates_the_demo_app_once,
    operators_work_from_the_command_line,
    a_wrong_master_key_is_refused,
);

async fn health_metrics_and_openapi(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.app("test").await;
    assert_eq!(
        s.call(Method::GET, "/healthz", None, None).await.json,
        json!({"status": "ok"})
    );
    assert_eq!(
        s.call(Method::GET, "/readyz", None, None).await.json,
        json!({"status": "ready"})
    );
    s.get("/v1/products", &a.admin).await;
    s.get("/v1/nope", &a.admin).await;

    let m = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(
            r#"paybridge_http_requests_total{method="GET",route="/v1/products",status="200"} 1"#
        ),
        "{m}"
    );
    assert!(m.contains(r#"route="unmatched",status="404""#), "{m}");
    assert!(
        m.contains("paybridge_http_request_duration_seconds_bucket"),
        "{m}"
    );

    let doc: Value = s.openapi().await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/v1/apps", "post"),
        ("/v1/apps/{id}/keys", "post"),
        ("/v1/keys/{id}", "delete"),
        ("/v1/payment_config", "put"),
        ("/v1/payment_config/signing_secret", "put"),
        ("/v1/payment_config/status", "get"),
        ("/v1/config", "get"),
        ("/v1/products", "get"),
        ("/v1/products/{id}", "patch"),
        ("/healthz", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing from /openapi.json"
        );
    }
    assert!(doc["components"]["schemas"]["CreateProduct"]["properties"]["unit_amount"].is_object());
    let docs = s.http.get(s.url("/docs")).send().await.unwrap();
    assert!(docs.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let html = docs.text().await.unwrap();
    assert!(html.contains("/v1/payment_config/signing_secret") && html.contains("CreateProduct"));
}

async fn request_ids_json_logs_and_graceful_shutdown(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let mut s = Server::start_with(&db, &[("PAYBRIDGE_JSON_LOGS", "true")]).await;
    let r = s.call(Method::GET, "/healthz", None, None).await;
    let id = r
        .header("x-request-id")
        .expect("x-request-id on every response");
    let r2 = s
        .call_with(
            Method::GET,
            "/healthz",
            None,
            None,
            &[("x-request-id", "caller-chosen-id")],
        )
        .await;
    assert_eq!(
        r2.header("x-request-id").as_deref(),
        Some("caller-chosen-id")
    );
    assert!(s.terminate(), "SIGTERM did not stop the server cleanly");
    let logs = s.logs();
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        !lines.is_empty() && lines.len() == logs.lines().count(),
        "every log line is JSON:\n{logs}"
    );
    assert!(
        lines.iter().any(|l| l.to_string().contains(&id)),
        "the request id appears in the logs:\n{logs}"
    );
    assert!(logs.contains("shutting down"));
}

async fn first_start_creates_the_demo_app_once(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let mut s = Server::start_with(&db, &[("PAYBRIDGE_NO_DEMO", "false")]).await;
    let banner = s.banner();
    let find = |label: &str, banner: &str| {
        banner
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
    };
    let pk = find("publishable key", &banner).expect("banner shows the publishable key");
    let admin = find("admin key", &banner).expect("banner shows the admin key once");
    let products = s.get("/v1/products", &pk).await;
    assert!(products.json["data"].as_array().unwrap().len() >= 2);
    let cfg = s.get("/v1/payment_config", &admin).await;
    assert_eq!(cfg.json["provider"], "sandbox");
    assert_eq!(cfg.json["configured"], true);
    s.terminate();
    let s = Server::start_with(&db, &[("PAYBRIDGE_NO_DEMO", "false")]).await;
    let banner = s.banner();
    assert_eq!(
        find("publishable key", &banner).as_deref(),
        Some(pk.as_str())
    );
    assert!(
        find("admin key", &banner).is_none(),
        "the admin key is shown only once"
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM apps WHERE demo = 1").await,
        1
    );
    assert!(
        !db.all_stored_text().await.contains(&pk),
        "the demo key is kept sealed"
    );
}

fn cli(db: &TestDb, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_paybridge"))
        .args(args)
        .arg("--database-url")
        .arg(&db.url)
        .current_dir(db.dir.path())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn operators_work_from_the_command_line(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let (ok, out, err) = cli(&db, &["migrate"]);
    assert!(ok, "{err}");
    assert!(out.contains("migrations applied"));
    let (ok, out, err) = cli(
        &db,
        &[
            "app",
            "create",
            "--name",
            "CLI shop",
            "--environment",
            "live",
        ],
    );
    assert!(ok, "{err}");
    let app: Value = serde_json::from_str(&out).unwrap();
    assert!(app["keys"]["admin"]
        .as_str()
        .unwrap()
        .starts_with("pb_ak_live_"));
    let app_id = app["id"].as_str().unwrap();
    let (ok, out, err) = cli(
        &db,
        &[
            "key",
            "create",
            "--app",
            app_id,
            "--role",
            "server",
            "--permission",
            "refunds:write",
        ],
    );
    assert!(ok, "{err}");
    let key: Value = serde_json::from_str(&out).unwrap();
    let (ok, _, err) = cli(
        &db,
        &[
            "key",
            "create",
            "--app",
            app_id,
            "--role",
            "publishable",
            "--permission",
            "refunds:write",
        ],
    );
    assert!(!ok && err.contains("server keys"), "{err}");

    let s = Server::start(&db).await;
    let server_key = key["key"].as_str().unwrap();
    assert_eq!(
        s.get("/v1/products", server_key).await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.get("/v1/products", app["keys"]["admin"].as_str().unwrap())
            .await
            .status,
        StatusCode::OK
    );
    let (ok, _, err) = cli(&db, &["key", "revoke", key["id"].as_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(
        s.get("/v1/products", server_key).await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn a_wrong_master_key_is_refused(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    drop(Server::start(&db).await);
    let other = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let out = Command::new(env!("CARGO_BIN_EXE_paybridge"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &db.url,
        ])
        .env("PAYBRIDGE_MASTER_KEY", other)
        .env("PAYBRIDGE_NO_DEMO", "true")
        .current_dir(db.dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("master key does not open"));
}

/// On PostgreSQL the leader analyzes a table never analyzed once 500 of its rows have
/// changed (`paybridge_store::planner`), seconds after they arrive rather than at autovacuum's
/// next round: the plans the pooled connections keep are then made with statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_postgres_database_is_analyzed_by_the_leader_once_it_has_payments() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.app("test").await;
    let analyzed = "SELECT COUNT(*) FROM pg_stat_user_tables \
                    WHERE relname = 'payments' AND last_analyze IS NOT NULL";
    assert_eq!(db.scalar(analyzed).await, 0, "no payments yet");
    // Only the server may analyze them here, not autovacuum.
    db.execute("ALTER TABLE orders SET (autovacuum_enabled = false)")
        .await;
    db.execute("ALTER TABLE payments SET (autovacuum_enabled = false)")
        .await;
    db.execute(&format!(
        "INSERT INTO orders (id, app_id, currency, amount_total, amount_paid, amount_refunded, \
         status, line_items, metadata, client_secret, created, updated) \
         SELECT 'ord_' || i, '{app}', 'usd', 2500, 0, 0, 'open', '[]', '{{}}', 'cs', i, i \
         FROM generate_series(1, 600) i",
        app = a.id
    ))
    .await;
    db.execute(&format!(
        "INSERT INTO payments (id, app_id, order_id, method, capture_method, provider, \
         lifecycle, status, amount, currency, metadata, created, updated) \
         SELECT 'pay_' || i, '{app}', 'ord_' || i, 'checkout', 'automatic', 'sandbox', \
         'initiated', 'pending', 2500, 'usd', '{{}}', i, i FROM generate_series(1, 600) i",
        app = a.id
    ))
    .await;
    // The housekeeping tick is 2 s; the activity counts reach it within a second or so.
    // `last_analyze` is a manual `ANALYZE`'s, not autovacuum's (`last_autoanalyze`).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while db.scalar(analyzed).await == 0 || !s.logs().contains("planner statistics gathered") {
        assert!(
            std::time::Instant::now() < deadline,
            "payments not analyzed, and said so, within 20 s:\n{}",
            s.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
