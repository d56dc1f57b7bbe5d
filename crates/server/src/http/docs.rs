//! `/openapi.json` and `/docs`. The page is rendered here from the generated document,
//! with no script and nothing fetched from a CDN, so it works on an offline machine and
//! under a strict Content-Security-Policy (the usual viewers — Swagger UI, Redoc,
//! Scalar — load their code from the internet).

use std::fmt::Write;
use std::sync::Arc;

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{OpenApi, RefOr};

use crate::state::AppState;

pub fn routes(doc: Arc<OpenApi>) -> Router<AppState> {
    let json = Arc::new(doc.to_pretty_json().unwrap_or_else(|_| "{}".into()));
    let html = Arc::new(render(&doc));
    Router::new()
        .route(
            "/openapi.json",
            get(move || {
                let json = json.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        json.to_string(),
                    )
                }
            }),
        )
        .route(
            "/docs",
            get(move || {
                let html = html.clone();
                async move {
                    (
                        [(
                            header::CONTENT_SECURITY_POLICY,
                            "default-src 'none'; style-src 'unsafe-inline'",
                        )],
                        Html(html.to_string()),
                    )
                        .into_response()
                }
            }),
        )
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Escapes text and writes its `backtick spans` as code (the descriptions are written
/// in that Markdown habit). An unpaired backtick stays as it is.
fn prose(s: &str) -> String {
    let parts: Vec<&str> = s.split('`').collect();
    let mut out = String::new();
    let pairs = (parts.len() - 1) / 2 * 2;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            if i > pairs {
                out.push('`');
            } else {
                out.push_str(if i % 2 == 1 { "<code>" } else { "</code>" });
            }
        }
        out.push_str(&esc(part));
    }
    out
}

/// A schema as a link to its section, or (an inline one) shown in place.
fn schema_html(r: &RefOr<utoipa::openapi::schema::Schema>) -> String {
    match r {
        RefOr::Ref(r) => {
            let n = esc(r.ref_location.rsplit('/').next().unwrap_or(""));
            format!("<a href=\"#schema-{n}\">{n}</a>")
        }
        RefOr::T(t) => format!(
            "<details><summary>inline schema</summary><pre>{}</pre></details>",
            esc(&serde_json::to_string_pretty(t).unwrap_or_default())
        ),
    }
}

const AUTHENTICATION: &str = "<section id=authentication><h2>Authentication</h2>\
<p>Every request but <code>/healthz</code>, <code>/readyz</code>, <code>/metrics</code>, \
these docs and the Stripe webhook carries a key in the <code>Authorization</code> header:</p>\
<pre>Authorization: Bearer pb_sk_test_…</pre>\
<p>\"Bearer\" means that holding the key is the whole proof (there is no signature or \
login): send it over HTTPS only, and keep every key but the publishable one on servers. \
A request without a key, or with an unknown or revoked one, gets <code>401</code>; a key \
whose role may not do something gets <code>403</code>. Keys by role:</p><ul>\
<li><code>pb_pk_…</code> publishable: safe in a browser or app; reads products and the \
configuration status, starts checkouts, and follows one order with its \
<code>client_secret</code>.</li>\
<li><code>pb_sk_…</code> server: your app's back end (payments, customers, refunds with a grant).</li>\
<li><code>pb_ak_…</code> admin: the app's owner (configuration, keys, callbacks, the dashboard).</li>\
<li><code>pb_root_…</code> root: the operator; creates apps.</li></ul>\
<p>Each key is for one app and one environment (<code>test</code> or <code>live</code>, \
in its name). Every <code>POST</code> may carry an <code>Idempotency-Key</code> header.</p></section>";

fn render_operation(out: &mut String, method: &str, path: &str, op: &Operation) {
    let _ = write!(
        out,
        "<section><h3><span class=m>{}</span> <code>{}</code></h3>",
        method.to_uppercase(),
        esc(path)
    );
    if let Some(s) = op.description.as_ref().or(op.summary.as_ref()) {
        let _ = write!(out, "<p>{}</p>", prose(s));
    }
    if let Some(params) = &op.parameters {
        out.push_str("<p>Parameters: ");
        let names: Vec<String> = params
            .iter()
            .map(|p| {
                let d = p.description.as_deref().map(prose).unwrap_or_default();
                if d.is_empty() {
                    format!("<code>{}</code>", esc(&p.name))
                } else {
                    format!("<code>{}</code> ({d})", esc(&p.name))
                }
            })
            .collect();
        out.push_str(&names.join(", "));
        out.push_str("</p>");
    }
    if let Some(body) = &op.request_body {
        for (ct, content) in &body.content {
            let schema = content.schema.as_ref().map(schema_html).unwrap_or_default();
            let _ = write!(out, "<p>Body ({}): {schema}</p>", esc(ct));
        }
    }
    out.push_str("<ul>");
    for (status, resp) in &op.responses.responses {
        let desc = match resp {
            RefOr::T(r) => {
                let body: Vec<String> = r
                    .content
                    .values()
                    .filter_map(|c| c.schema.as_ref().map(schema_html))
                    .collect();
                format!("{} {}", prose(&r.description), body.join(", "))
            }
            RefOr::Ref(r) => esc(&r.ref_location),
        };
        let _ = write!(out, "<li><b>{}</b> {}</li>", esc(status), desc);
    }
    out.push_str("</ul></section>");
}

pub fn render(doc: &OpenApi) -> String {
    let mut out = String::from(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\"><title>paybridge API</title><style>\
         *{box-sizing:border-box}body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#1a1a2e;overflow-wrap:anywhere}\
         section{border-top:1px solid #ddd;padding:.4em 0}h3{margin:.3em 0;font-size:1em}\
         .m{display:inline-block;min-width:4.5em;font-weight:700;color:#635bff}code{background:#f4f4f8;padding:0 .3em}\
         pre{background:#f4f4f8;padding:.6em;overflow:auto;font-size:13px}</style></head><body>",
    );
    let _ = write!(
        out,
        "<h1>{} {}</h1><p>{}</p><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a>. \
         Start with <a href=\"#authentication\">Authentication</a>.</p>{AUTHENTICATION}<h2>Operations</h2>",
        esc(&doc.info.title),
        esc(&doc.info.version),
        prose(doc.info.description.as_deref().unwrap_or(""))
    );
    for (path, item) in &doc.paths.paths {
        let ops = [
            ("get", &item.get),
            ("post", &item.post),
            ("put", &item.put),
            ("patch", &item.patch),
            ("delete", &item.delete),
        ];
        for (method, op) in ops {
            if let Some(op) = op {
                render_operation(&mut out, method, path, op);
            }
        }
    }
    out.push_str("<h2>Schemas</h2>");
    if let Some(components) = &doc.components {
        for (name, schema) in &components.schemas {
            let json = serde_json::to_string_pretty(schema).unwrap_or_default();
            let _ = write!(
                out,
                "<section id=\"schema-{n}\"><h3>{n}</h3><pre>{}</pre></section>",
                esc(&json),
                n = esc(name)
            );
        }
    }
    out.push_str("</body></html>");
    out
}
