//! The net under the extractors: any refusal that leaves the router in some other form
//! than the one error shape (axum's own rejections are plain text; an empty 4xx has no
//! body at all) is rewritten into it, keeping its status and headers (`Allow`,
//! `Retry-After`). Pages (`text/html`) and JSON answers pass untouched.
//!
//! The extractors in `http::extract` already answer in the shape, naming the
//! parameter; clippy.toml forbids axum's `Path` and `Query` in this crate. This layer
//! catches what a future handler or layer lets through.

use axum::body::to_bytes;
use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorType};

/// How much of the framework's text is kept as the message.
const MESSAGE_MAX: usize = 200;

pub async fn in_error_shape(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") || content_type.starts_with("text/html") {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    // The framework's messages are short; a longer body is not one of them.
    let text = to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let (kind, code) = classify(status);
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("The request was refused")
            .to_owned()
    } else {
        truncate(&text, MESSAGE_MAX)
    };
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), message = %message, "a framework error reached the caller");
    }
    let mut out = ApiError::new(status, kind, code, message).into_response();
    for (name, value) in parts.headers.iter() {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

fn classify(status: StatusCode) -> (ErrorType, &'static str) {
    match status {
        StatusCode::UNAUTHORIZED => (ErrorType::AuthenticationError, "api_key_invalid"),
        StatusCode::FORBIDDEN => (ErrorType::PermissionError, "permission_denied"),
        StatusCode::NOT_FOUND => (ErrorType::InvalidRequestError, "route_not_found"),
        StatusCode::METHOD_NOT_ALLOWED => (ErrorType::InvalidRequestError, "method_not_allowed"),
        StatusCode::REQUEST_TIMEOUT => (ErrorType::InvalidRequestError, "request_timeout"),
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorType::InvalidRequestError, "body_too_large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            (ErrorType::InvalidRequestError, "unsupported_media_type")
        }
        StatusCode::TOO_MANY_REQUESTS => (ErrorType::RateLimitError, "rate_limited"),
        s if s.is_server_error() => (ErrorType::ApiError, "internal_error"),
        _ => (ErrorType::InvalidRequestError, "invalid_request"),
    }
}

/// At most `max` characters, cut on a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    #[tokio::test]
    async fn plain_refusals_are_rewritten_and_pages_are_not() {
        let app = Router::new()
            .route(
                "/plain",
                get(|| async { (StatusCode::BAD_REQUEST, "Invalid URL: bad bytes") }),
            )
            .route(
                "/empty",
                get(|| async { (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "3")]) }),
            )
            .route(
                "/page",
                get(|| async { (StatusCode::NOT_FOUND, axum::response::Html("<p>gone</p>")) }),
            )
            .route("/ok", get(|| async { "fine" }))
            .layer(axum::middleware::from_fn(in_error_shape));
        let call = |path: &'static str| {
            let app = app.clone();
            async move {
                let r = app
                    .oneshot(Request::get(path).body(axum::body::Body::empty()).unwrap())
                    .await
                    .unwrap();
                let status = r.status();
                let headers = r.headers().clone();
                let body = to_bytes(r.into_body(), 1 << 20).await.unwrap();
                (status, headers, String::from_utf8(body.to_vec()).unwrap())
            }
        };
        let (s, h, b) = call("/plain").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(h[CONTENT_TYPE], "application/json");
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["error"]["code"], "invalid_request");
        assert_eq!(v["error"]["message"], "Invalid URL: bad bytes");
        let (s, h, b) = call("/empty").await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(h["retry-after"], "3");
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["error"]["type"], "rate_limit_error");
        let (_, h, b) = call("/page").await;
        assert!(h[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        assert_eq!(b, "<p>gone</p>");
        let (s, _, b) = call("/ok").await;
        assert_eq!((s, b.as_str()), (StatusCode::OK, "fine"));
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
