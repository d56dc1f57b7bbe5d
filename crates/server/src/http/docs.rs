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

fn schema_name(r: &RefOr<utoipa::openapi::schema::Schema>) -> String {
    match r {
        RefOr::Ref(r) => r.ref_location.rsplit('/').next().unwrap_or("").to_owned(),
        RefOr::T(_) => "inline".to_owned(),
    }
}

fn render_operation(out: &mut String, method: &str, path: &str, op: &Operation) {
    let _ = write!(
        out,
        "<section><h3><span class=m>{}</span> <code>{}</code></h3>",
        method.to_uppercase(),
        esc(path)
    );
    if let Some(s) = op.description.as_ref().or(op.summary.as_ref()) {
        let _ = write!(out, "<p>{}</p>", esc(s));
    }
    if let Some(params) = &op.parameters {
        out.push_str("<p>Parameters: ");
        let names: Vec<String> = params
            .iter()
            .map(|p| format!("<code>{}</code>", esc(&p.name)))
            .collect();
        out.push_str(&names.join(", "));
        out.push_str("</p>");
    }
    if let Some(body) = &op.request_body {
        for (ct, content) in &body.content {
            let _ = write!(
                out,
                "<p>Body ({}): <a href=\"#schema-{n}\">{n}</a></p>",
                esc(ct),
                n = esc(&schema_name(
                    &content
                        .schema
                        .clone()
                        .unwrap_or(RefOr::T(Default::default()))
                ))
            );
        }
    }
    out.push_str("<ul>");
    for (status, resp) in &op.responses.responses {
        let desc = match resp {
            RefOr::T(r) => {
                let body: Vec<String> = r
                    .content
                    .values()
                    .filter_map(|c| c.schema.as_ref().map(schema_name))
                    .collect();
                format!("{} {}", esc(&r.description), esc(&body.join(", ")))
            }
            RefOr::Ref(r) => esc(&r.ref_location),
        };
        let _ = write!(out, "<li><b>{}</b> {}</li>", esc(status), desc);
    }
    out.push_str("</ul></section>");
}

pub fn render(doc: &OpenApi) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=utf-8><title>paybridge API</title><style>\
         body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#1a1a2e}\
         section{border-top:1px solid #ddd;padding:.4em 0}h3{margin:.3em 0;font-size:1em}\
         .m{display:inline-block;min-width:4.5em;font-weight:700;color:#635bff}code{background:#f4f4f8;padding:0 .3em}\
         pre{background:#f4f4f8;padding:.6em;overflow:auto;font-size:13px}</style></head><body>",
    );
    let _ = write!(
        out,
        "<h1>{} {}</h1><p>{}</p><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a></p>",
        esc(&doc.info.title),
        esc(&doc.info.version),
        esc(doc.info.description.as_deref().unwrap_or(""))
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
