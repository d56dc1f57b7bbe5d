//! `Idempotency-Key` on POST, and completion of every POST regardless of the client.
//!
//! A POST runs in its own task: if the client hangs up half-way, the work still
//! finishes and is recorded (a money path must never stop between asking the provider
//! and writing down the answer). With an `Idempotency-Key`, the request is claimed
//! first (see `paybridge_store::idempotency`); the response is stored when the request
//! was executed (2xx, or 402 for a declined card) and replayed to later requests with
//! the same key and body. Validation failures and server errors are not stored, so a
//! corrected request or a retry may reuse the key, as with Stripe.
//!
//! A key belongs to the API key that sent it (`idempotency::Owner`): another of the
//! app's keys sending the same `Idempotency-Key` makes a request of its own, checked
//! for permission like any other, and neither gets the stored response (which may hold
//! a new key's or a callback endpoint's secret) nor a 422 telling it the key was used.

use std::panic::AssertUnwindSafe;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use paybridge_core::keys::Principal;
use paybridge_store::idempotency::{self, Claim, Owner};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ErrorType};
use crate::http::extract::{read_limited, MAX_BODY};
use crate::state::AppState;

pub const HEADER: &str = "idempotency-key";

pub async fn idempotency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(raw_key) = req.headers().get(HEADER).cloned() else {
        return run_detached(next, req).await;
    };
    let key = match raw_key.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()) => {
            k.to_owned()
        }
        _ => {
            return ApiError::bad_request(
                "idempotency_key_invalid",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
            .with_param("Idempotency-Key")
            .into_response()
        }
    };
    let (scope, api_key) = match req.extensions().get::<Principal>() {
        Some(p) => (
            p.app_id
                .as_ref()
                .map(|a| a.to_string())
                .unwrap_or_else(|| "root".to_owned()),
            p.key_id.clone().unwrap_or_else(|| "root".to_owned()),
        ),
        // Unauthenticated POSTs (webhooks) have their own dedupe; let the handler say 401.
        None => return run_detached(next, req).await,
    };
    let (parts, body) = req.into_parts();
    let bytes = match read_limited(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let fingerprint = {
        let mut h = Sha256::new();
        h.update(parts.method.as_str());
        h.update(b" ");
        h.update(parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or(""));
        h.update(b"\n");
        h.update(&bytes);
        hex::encode(h.finalize())
    };
    let stale_ms = state.settings.idempotency_stale.as_millis() as i64;
    let owner = Owner {
        scope: &scope,
        api_key: &api_key,
    };
    let claim = match idempotency::claim(&state.db, owner, &key, &fingerprint, stale_ms).await {
        Ok(c) => c,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match claim {
        Claim::Replay { status, body } => {
            let mut resp = Response::new(Body::from(body));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let h = resp.headers_mut();
            h.insert("content-type", HeaderValue::from_static("application/json"));
            h.insert("idempotent-replayed", HeaderValue::from_static("true"));
            resp
        }
        Claim::Mismatch => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::IdempotencyError,
            "idempotency_key_reused",
            "This Idempotency-Key was already used with another request (different body or path)",
        )
        .with_param("Idempotency-Key")
        .into_response(),
        Claim::InFlight => ApiError::new(
            StatusCode::CONFLICT,
            ErrorType::IdempotencyError,
            "idempotency_key_in_use",
            "A request with this Idempotency-Key is still being processed; retry later",
        )
        .with_param("Idempotency-Key")
        .into_response(),
        Claim::Run => {
            let req = Request::from_parts(parts, Body::from(bytes));
            // Run and record in one detached task: a dropped connection must not
            // leave the key claimed with its work done but its response unrecorded.
            // Its reads are noted for `answer_durably` (task-locals do not pass into a
            // spawned task).
            let task = paybridge_store::spawn_noted(async move {
                let resp = match AssertUnwindSafe(next.run(req)).catch_unwind().await {
                    Ok(r) => r,
                    Err(_) => ApiError::internal("request handler panicked").into_response(),
                };
                let owner = Owner {
                    scope: &scope,
                    api_key: &api_key,
                };
                record(&state, owner, &key, resp).await
            });
            task.await.unwrap_or_else(|e| {
                ApiError::internal(format!("request task failed: {e}")).into_response()
            })
        }
    }
}

async fn record(state: &AppState, owner: Owner<'_>, key: &str, resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_success() || status == StatusCode::PAYMENT_REQUIRED) {
        if let Err(e) = idempotency::release(&state.db, owner, key).await {
            tracing::error!(error = %e, "could not release an idempotency key");
        }
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = match to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            let _ = idempotency::release(&state.db, owner, key).await;
            return ApiError::internal(e).into_response();
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    if let Err(e) = idempotency::complete(&state.db, owner, key, status.as_u16(), &text).await {
        tracing::error!(error = %e, "could not store an idempotent response");
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// Runs the rest of the stack in its own task, so it completes even if the caller's
/// connection (and with it this future) is dropped.
async fn run_detached(next: Next, req: Request) -> Response {
    match paybridge_store::spawn_noted(next.run(req)).await {
        Ok(resp) => resp,
        Err(e) => ApiError::internal(format!("request task failed: {e}")).into_response(),
    }
}
