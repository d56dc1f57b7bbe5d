//! Request extractors that speak the one error shape: a JSON body that names the bad
//! parameter, a query string that does the same, and the authenticated caller.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use paybridge_core::ids::AppId;
use paybridge_core::keys::{Permission, Principal, Role};
use serde::de::DeserializeOwned;

use crate::error::{from_json_error, ApiError};

/// Largest request body accepted (1 MiB); larger bodies get a 413.
pub const MAX_BODY: usize = 1024 * 1024;

/// How much of an oversized body is still read (and thrown away) before the 413 is
/// sent, so that a client still writing it reads the answer instead of a reset.
const DRAIN_MAX: usize = 8 * 1024 * 1024;

/// Reads a body of at most `limit` bytes. A larger one is drained (up to `DRAIN_MAX`,
/// for a few seconds) and refused.
pub async fn read_limited(body: axum::body::Body, limit: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(f))) => f,
            Ok(None) => break,
            Ok(Some(Err(_))) | Err(_) => {
                return if total > limit {
                    Err(body_too_large())
                } else {
                    Err(ApiError::bad_request(
                        "body_unreadable",
                        "The request body could not be read",
                    ))
                };
            }
        };
        if let Ok(data) = frame.into_data() {
            total += data.len();
            if total <= limit {
                buf.extend_from_slice(&data);
            } else if total > DRAIN_MAX {
                return Err(body_too_large());
            }
        }
    }
    if total > limit {
        return Err(body_too_large());
    }
    Ok(buf.freeze())
}

/// A JSON request body. Unknown fields, wrong types and missing fields become a 400
/// that names the parameter; a non-JSON content type a 415; an empty body reads as `{}`.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let mime = v.split(';').next().unwrap_or("").trim();
                mime.eq_ignore_ascii_case("application/json")
            });
        let _ = state;
        let bytes = read_limited(req.into_body(), MAX_BODY).await?;
        let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
            Bytes::from_static(b"{}")
        } else {
            if json_type != Some(true) {
                return Err(ApiError::new(
                    axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    crate::error::ErrorType::InvalidRequestError,
                    "unsupported_media_type",
                    "Send the request body as JSON with `Content-Type: application/json`",
                ));
            }
            bytes
        };
        parse_json(&bytes).map(Body)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(de).map_err(from_json_error)?;
    Ok(value)
}

pub fn body_too_large() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        crate::error::ErrorType::InvalidRequestError,
        "body_too_large",
        format!("The request body is larger than {MAX_BODY} bytes"),
    )
}

/// A query string, parsed with the same care as a body.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let path = e.path().to_string();
                let msg = e.into_inner().to_string();
                let mut err = ApiError::bad_request(
                    "parameter_invalid",
                    format!("Invalid query parameter: {msg}"),
                );
                if let Some(field) = msg
                    .strip_prefix("unknown field `")
                    .and_then(|r| r.split('`').next())
                {
                    err.code = "parameter_unknown".into();
                    err.param = Some(field.to_owned());
                } else if path != "." && !path.is_empty() {
                    err.param = Some(path);
                }
                err
            })
    }
}

/// The caller, as the bearer key established (see `http::auth`). Handlers ask it for
/// permissions; the rules themselves live in `paybridge_core::keys`.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| {
                ApiError::unauthorized("No API key provided: send `Authorization: Bearer <key>`")
                    .with_code("api_key_missing")
            })
    }
}

impl Caller {
    pub fn require(&self, p: Permission) -> Result<(), ApiError> {
        if self.0.can(p) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "A {} key cannot do this (it needs the `{p}` permission)",
                self.0.role.as_str()
            )))
        }
    }

    /// The app this key acts in, after checking the permission.
    pub fn app(&self, p: Permission) -> Result<&AppId, ApiError> {
        self.require(p)?;
        self.0.app_id.as_ref().ok_or_else(|| {
            ApiError::forbidden("The root key acts on no app; use one of the app's keys")
        })
    }

    pub fn is_root(&self) -> bool {
        self.0.role == Role::Root
    }
}

impl ApiError {
    pub fn with_code(mut self, code: &str) -> ApiError {
        self.code = code.to_owned();
        self
    }
}
