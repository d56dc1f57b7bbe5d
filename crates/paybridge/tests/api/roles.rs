//! The route × role table of docs/SECURITY.md, checked against the server: every
//! operation of `/openapi.json` must have exactly one row, every row an operation, and
//! each cell must be what the server does when that role calls the route on its own
//! app's objects. So a new endpoint cannot ship without a decision in the table, and a
//! permission cannot change without the table changing with it.
//!
//! Cells: `yes` (not refused: anything but 401 and 403), `no` (refused: 401 without a
//! key, 403 with one), `secret` (a publishable key only with the order's
//! `client_secret`: 404 without it, as for an order that does not exist, and not
//! refused with it), `grant` (a server key only with an explicit grant: refused for a
//! server key without one).
//!
//! `PAYBRIDGE_PRINT_ROLE_TABLE=1` prints the table the server shows instead of failing,
//! for a reviewer to compare with the document.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};

use crate::common::{Backend, Server, TestDb};
use crate::isolation::{body_for, fixtures, kind_of, referencing_body, Fixtures};

paybridge_testkit::on_both!(the_security_table_is_what_the_server_does);

const ROLES: [&str; 5] = ["anonymous", "publishable", "server", "admin", "root"];

/// The rows of the table in docs/SECURITY.md: (method, path) → the cells by role.
fn documented() -> BTreeMap<(String, String), Vec<String>> {
    let path = paybridge_testkit::repo_root().join("docs/SECURITY.md");
    let text = std::fs::read_to_string(&path).expect("docs/SECURITY.md");
    let mut rows = BTreeMap::new();
    let mut header: Option<Vec<String>> = None;
    for line in text.lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            header = None;
            continue;
        }
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().trim_matches('`').to_owned())
            .collect();
        if cells.first().map(String::as_str) == Some("Method") {
            assert_eq!(
                &cells[2..7],
                &ROLES.map(str::to_owned),
                "the route table's columns in SECURITY.md"
            );
            header = Some(cells);
            continue;
        }
        if header.is_none() || cells[0].starts_with('-') {
            continue;
        }
        let key = (cells[0].to_uppercase(), cells[1].clone());
        let values: Vec<String> = cells[2..7].iter().map(|c| first_word(c)).collect();
        for v in &values {
            assert!(
                ["yes", "no", "secret", "grant"].contains(&v.as_str()),
                "{key:?}: `{v}` is not yes, no, secret or grant"
            );
        }
        assert!(
            rows.insert(key.clone(), values).is_none(),
            "{key:?} has two rows in SECURITY.md"
        );
    }
    rows
}

/// A cell may carry a note after its word (`no (sec-app)`).
fn first_word(cell: &str) -> String {
    cell.split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// What one call answered: the status, without reading an event stream's body.
async fn status_of(
    s: &Server,
    method: &Method,
    path: &str,
    key: Option<&str>,
    f: &Fixtures,
    template: &str,
) -> StatusCode {
    let body = valid_body(method.as_str(), template, f)
        .or_else(|| referencing_body(method.as_str(), template, f))
        .or_else(|| body_for(method.as_str(), template));
    let mut req = s.http.request(method.clone(), s.url(path));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let stream = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
    if !stream {
        let _ = resp.bytes().await;
    }
    status
}

/// Bodies that pass validation, so that what answers is the permission check (a body
/// is read before the handler asks for a permission, and a 400 would hide it).
fn valid_body(method: &str, template: &str, f: &Fixtures) -> Option<serde_json::Value> {
    use serde_json::json;
    Some(match (method, template) {
        ("POST", "/v1/apps") => json!({"name": "role sweep", "environment": "test"}),
        ("POST", "/v1/callback_endpoints") => json!({"url": "https://app.example/hooks"}),
        ("POST", "/v1/connect/accounts") => {
            json!({"email": "sweep@example.com", "external_id": "role-sweep", "country": "us"})
        }
        ("POST", "/v1/customers") => json!({"external_id": "role-sweep"}),
        ("POST", "/v1/customers/{id}/portal_sessions") => {
            json!({"return_url": "https://shop.example/account"})
        }
        ("PUT", "/v1/payment_config") => json!({"provider": "sandbox"}),
        ("PUT", "/v1/payment_config/signing_secret") => {
            json!({"signing_secret": "whsec_rolesweeprolesweeprolesweep"})
        }
        ("POST", "/v1/products") => {
            json!({"name": "Sweep", "unit_amount": 100, "currency": "usd"})
        }
        ("POST", "/v1/checkout/sessions") => json!({
            "line_items": [{"product": f.ids["product"], "quantity": 1}],
            "success_url": "https://shop.example/ok",
            "cancel_url": "https://shop.example/cart",
        }),
        _ => return None,
    })
}

fn refused(role: &str, status: StatusCode) -> bool {
    if role == "anonymous" {
        status == StatusCode::UNAUTHORIZED
    } else {
        status == StatusCode::FORBIDDEN
    }
}

async fn the_security_table_is_what_the_server_does(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    // A sweep of every route with every key is not a storefront's traffic: the
    // publishable and anonymous budgets are lifted for it.
    let s = Server::start_with(
        &db,
        &[
            ("PAYBRIDGE_RATE_LIMIT_PUBLISHABLE_WRITE", "off"),
            ("PAYBRIDGE_RATE_LIMIT_PUBLISHABLE", "off"),
            ("PAYBRIDGE_RATE_LIMIT_ANONYMOUS", "off"),
        ],
    )
    .await;
    let a = s.sandbox_app().await;
    let mut f = fixtures(&s, &a).await;
    // A key the admin may revoke during the sweep (not one the sweep uses).
    let spare = s
        .post(
            &format!("/v1/apps/{}/keys", a.id),
            &a.admin,
            serde_json::json!({"role": "server"}),
        )
        .await;
    f.ids
        .insert("key", spare.json["id"].as_str().unwrap().to_owned());
    // The order the sweep uses, with its client secret (shown only when created).
    let order = s
        .post(
            "/v1/orders",
            &a.server,
            serde_json::json!({"currency": "usd", "line_items": [{"product": f.ids["product"], "quantity": 1}]}),
        )
        .await;
    let order_secret = order.json["client_secret"]
        .as_str()
        .expect("the order's client_secret")
        .to_owned();
    f.ids
        .insert("order", order.json["id"].as_str().unwrap().to_owned());

    let table = documented();
    let doc = s.openapi().await;
    let mut seen = Vec::new();
    let mut observed: Vec<(String, String, Vec<&'static str>)> = Vec::new();
    let mut wrong = Vec::new();
    for (template, ops) in doc["paths"].as_object().unwrap() {
        for (method, _) in ops.as_object().unwrap() {
            let method = method.to_uppercase();
            seen.push((method.clone(), template.clone()));
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let mut path = template.clone();
            for seg in template.split('/') {
                if let Some(p) = seg.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    path = path.replace(seg, &f.ids[kind_of(template, p)]);
                }
            }
            if template.contains("/payouts/") {
                path.push_str(&format!("?account={}", f.ids["account"]));
            }
            let expected = table.get(&(method.clone(), template.clone()));
            let mut row = Vec::new();
            // Refusals first, so nothing is changed before every role has been tried.
            for role in ROLES {
                let key = match role {
                    "anonymous" => None,
                    "publishable" => Some(a.publishable.as_str()),
                    "server" => Some(a.server.as_str()),
                    "admin" => Some(a.admin.as_str()),
                    _ => Some(s.root.as_str()),
                };
                let status = status_of(&s, &m, &path, key, &f, template).await;
                let want =
                    expected.map(|e| e[ROLES.iter().position(|r| *r == role).unwrap()].clone());
                let got = if !refused(role, status) {
                    // Not refused without the secret means more than `secret`.
                    "yes"
                } else {
                    "no"
                };
                let mut cell = got;
                if role == "publishable" && status == StatusCode::NOT_FOUND {
                    // Hidden without the order's secret: try it with the secret.
                    let sep = if path.contains('?') { '&' } else { '?' };
                    let with = format!("{path}{sep}client_secret={order_secret}");
                    let again = status_of(&s, &m, &with, key, &f, template).await;
                    if again.is_success() {
                        cell = "secret";
                    }
                }
                row.push(cell);
                let Some(want) = want else { continue };
                let ok = match want.as_str() {
                    "yes" => cell == "yes",
                    "secret" => cell == "secret",
                    // `no` and `grant` are both refused for the test's keys, which have
                    // no grants.
                    _ => cell == "no",
                };
                if !ok {
                    wrong.push(format!(
                        "{method} {template} as {role}: SECURITY.md says {want}, the server answered {status} ({cell})"
                    ));
                }
            }
            observed.push((method, template.clone(), row));
        }
    }
    if std::env::var("PAYBRIDGE_PRINT_ROLE_TABLE").is_ok() {
        let mut out = String::from(
            "| Method | Path | anonymous | publishable | server | admin | root |\n|---|---|---|---|---|---|---|\n",
        );
        for (m, p, row) in &observed {
            out.push_str(&format!("| {m} | `{p}` | {} |\n", row.join(" | ")));
        }
        eprintln!("{out}");
        return;
    }
    let missing: Vec<_> = seen.iter().filter(|k| !table.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "operations without a row in docs/SECURITY.md (decide who may call them): {missing:?}"
    );
    let stale: Vec<_> = table.keys().filter(|k| !seen.contains(k)).collect();
    assert!(
        stale.is_empty(),
        "rows in docs/SECURITY.md for operations the server does not have: {stale:?}"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(seen.len() >= 70, "only {} operations", seen.len());
}
