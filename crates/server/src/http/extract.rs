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

/// A JSON request body, always an object. Unknown fields, wrong types, missing fields
/// and the NUL character become a 400 that names the parameter; a non-JSON content
/// type a 415; a missing (zero-length) body reads as `{}`.
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
        // No body at all is an empty object; whitespace alone is not JSON.
        let bytes = if bytes.is_empty() {
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
        // Every body is an object. serde would also read a struct from an array of its
        // fields in order (`[]` or `[null]` for a body of optional fields), which no
        // client means and the document does not allow.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::bad_request(
                "parameter_invalid",
                "The request body must be a JSON object",
            ));
        }
        parse_json(&bytes).map(Body)
    }
}

/// Deserializes a nested body struct from a JSON object only. serde's derive also reads
/// a struct from an array of its fields in order, which no client means; the body as a
/// whole is checked in [`Body`], and a struct nested in it uses this. The struct derives
/// `Deserialize` with `#[serde(remote = "Self")]` (that makes the derived reader an
/// inherent function), and `object_only!(Type)` gives it the trait, reading a map and
/// nothing else, with the parameter path kept for the error.
macro_rules! object_only {
    ($t:ty) => {
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Fields;
                impl<'de> serde::de::Visitor<'de> for Fields {
                    type Value = $t;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a JSON object")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        map: A,
                    ) -> Result<$t, A::Error> {
                        <$t>::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    }
                }
                d.deserialize_map(Fields)
            }
        }
    };
}
pub(crate) use object_only;

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(de).map_err(from_json_error)?;
    if has_nul_escape(bytes) {
        return Err(nul_in_body(bytes));
    }
    Ok(value)
}

/// Whether a JSON text holds the NUL character. JSON can carry it only as the escape
/// `\u0000` (a raw control character in a string is a syntax error), so this is a
/// scan for that escape, minding `\\` (an escaped backslash before a literal `u0000`).
fn has_nul_escape(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'u') && bytes.get(i + 2..i + 6) == Some(b"0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// Text may not hold NUL: PostgreSQL cannot store it, and no identifier, name or URL
/// needs it. Refused as the caller's 400, naming the first field that holds one.
fn nul_in_body(bytes: &[u8]) -> ApiError {
    fn find(v: &serde_json::Value, path: &str) -> Option<String> {
        let join = |k: &str| {
            if path.is_empty() {
                k.to_owned()
            } else {
                format!("{path}.{k}")
            }
        };
        match v {
            serde_json::Value::String(s) if s.contains('\0') => Some(path.to_owned()),
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, item)| find(item, &format!("{path}[{i}]"))),
            serde_json::Value::Object(fields) => fields.iter().find_map(|(k, item)| {
                if k.contains('\0') {
                    // The object that holds the key, rather than echo the NUL back.
                    Some(path.to_owned())
                } else {
                    find(item, &join(k))
                }
            }),
            _ => None,
        }
    }
    let err = nul_refused("The request body");
    match serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| find(&v, ""))
    {
        Some(param) if !param.is_empty() => err.with_param(param),
        _ => err,
    }
}

/// The answer to a request that carries the NUL character.
pub fn nul_refused(place: &str) -> ApiError {
    ApiError::bad_request(
        "parameter_invalid",
        format!("{place} contains the NUL character (U+0000), which no value may hold"),
    )
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

/// The path's parameters, refused in the error shape: axum's own `Path` answers a bad
/// parameter (`%FF`, which is not UTF-8 once decoded) in plain text.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    // The one place axum's `Path` is used (clippy.toml forbids it elsewhere).
    #[allow(clippy::disallowed_types)]
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        let got = axum::extract::Path::<T>::from_request_parts(parts, state).await;
        let rejection = match got {
            Ok(axum::extract::Path(v)) => return Ok(Path(v)),
            Err(r) => r,
        };
        let PathRejection::FailedToDeserializePathParams(e) = rejection else {
            // The route and the handler disagree on their parameters: our bug.
            return Err(ApiError::internal(rejection.body_text()));
        };
        Err(match e.into_kind() {
            ErrorKind::InvalidUtf8InPathParam { key } => ApiError::bad_request(
                "parameter_invalid",
                format!("The path parameter `{key}` is not valid UTF-8 once percent-decoded"),
            )
            .with_param(key),
            ErrorKind::ParseErrorAtKey { key, .. } | ErrorKind::DeserializeError { key, .. } => {
                ApiError::bad_request(
                    "parameter_invalid",
                    format!("The path parameter `{key}` is not valid"),
                )
                .with_param(key)
            }
            ErrorKind::ParseError { .. } | ErrorKind::ParseErrorAtIndex { .. } => {
                ApiError::bad_request("parameter_invalid", "A path parameter is not valid")
            }
            other => ApiError::internal(other),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_found_only_where_json_encodes_it() {
        assert!(has_nul_escape(br#"{"a":"x\u0000"}"#));
        assert!(has_nul_escape(br#"{"a\u0000":1}"#));
        assert!(has_nul_escape(br#"["\\\u0000"]"#));
        assert!(!has_nul_escape(br#"{"a":"\\u0000"}"#));
        assert!(!has_nul_escape(br#""\u000"#));
        assert!(!has_nul_escape(br#"{"a":"\u0001 u0000"}"#));
        let e = parse_json::<serde_json::Value>(br#"{"a":[{"b":"\u0000"}]}"#).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(e.param.as_deref(), Some("a[0].b"));
        let e = parse_json::<serde_json::Value>(br#"{"o":{"k\u0000":1}}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("o"));
        assert!(parse_json::<serde_json::Value>(br#"{"a":"\\u0000"}"#).is_ok());
    }
}
