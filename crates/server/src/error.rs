//! The one error shape, Stripe's: `{"error":{"type","code","message","param"}}`.
//! Every failure a caller can see becomes an `ApiError`; internal causes are logged
//! with the request's id and never sent.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use paybridge_core::Invalid;
use paybridge_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    InvalidRequestError,
    AuthenticationError,
    PermissionError,
    IdempotencyError,
    RateLimitError,
    ProviderError,
    ApiError,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: ErrorType,
    pub code: String,
    pub message: String,
    pub param: Option<String>,
    /// For card declines: the issuer's reason (`insufficient_funds`, …), as Stripe's.
    pub decline_code: Option<String>,
    pub retry_after: Option<u64>,
}

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: ErrorType,
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<String>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: ErrorType,
        code: &str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            kind,
            code: code.to_owned(),
            message: message.into(),
            param: None,
            decline_code: None,
            retry_after: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> ApiError {
        self.param = Some(param.into());
        self
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorType::InvalidRequestError,
            code,
            message,
        )
    }

    pub fn unprocessable(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::InvalidRequestError,
            code,
            message,
        )
    }

    /// The answer for anything the caller may not see, including another app's
    /// objects: exactly the same as for an id that never existed.
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequestError,
            "resource_missing",
            format!("No such {what}"),
        )
    }

    pub fn conflict(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            ErrorType::InvalidRequestError,
            code,
            message,
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorType::AuthenticationError,
            "api_key_invalid",
            message,
        )
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorType::PermissionError,
            "permission_denied",
            message,
        )
    }

    /// Our own bug or an outage: the cause goes to the log, not to the caller.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::ApiError,
            "internal_error",
            "Something went wrong on our side; the request may be retried.",
        )
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::unprocessable(e.code, e.message).with_param(e.param)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("object"),
            StoreError::Conflict(_) => ApiError::conflict(
                "resource_already_exists",
                "An object with these unique values already exists",
            ),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind,
                code: self.code,
                message: self.message,
                param: self.param,
                decline_code: self.decline_code,
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        resp
    }
}

/// Turns a serde error on a request body into a 400 that names the parameter.
pub fn from_json_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let msg = inner.to_string();
    let prefixed = |field: &str| {
        if path.is_empty() || path == "." {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        }
    };
    if let Some(field) = backticked(&msg, "unknown field `") {
        // The path already ends with the unknown field itself.
        let param = if path.is_empty() || path == "." {
            field.clone()
        } else {
            path
        };
        return ApiError::bad_request(
            "parameter_unknown",
            format!("Received unknown parameter: {field}"),
        )
        .with_param(param);
    }
    if let Some(field) = backticked(&msg, "missing field `") {
        return ApiError::bad_request(
            "parameter_missing",
            format!("Missing required param: {field}"),
        )
        .with_param(prefixed(&field));
    }
    if inner.is_syntax() || inner.is_eof() {
        return ApiError::bad_request(
            "invalid_json",
            format!("The request body is not valid JSON: {msg}"),
        );
    }
    let param = if path.is_empty() || path == "." {
        None
    } else {
        Some(path)
    };
    let text = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
    let mut err = ApiError::bad_request("parameter_invalid", format!("Invalid value: {text}"));
    err.param = param;
    err
}

fn backticked(msg: &str, lead: &str) -> Option<String> {
    let start = msg.find(lead)? + lead.len();
    let end = msg[start..].find('`')?;
    Some(msg[start..start + end].to_owned())
}

/// Maps a storage "not found" to the caller's 404 for `what`; other failures pass on.
pub trait OrNotFound<T> {
    fn or_404(self, what: &str) -> ApiResult<T>;
}

impl<T> OrNotFound<T> for Result<T, StoreError> {
    fn or_404(self, what: &str) -> ApiResult<T> {
        self.map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found(what),
            other => other.into(),
        })
    }
}
