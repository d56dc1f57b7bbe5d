//! Binding an app to its provider: the `stripe` client with the app's secret key, or
//! the `sandbox`. Also how provider failures reach the caller.

use std::sync::Arc;

use axum::http::StatusCode;
use paybridge_core::ProviderKind;
use paybridge_provider::{Call, Fence, FenceWait, Provider, ProviderError};
use paybridge_store::config;
use secrecy::SecretString;

use crate::error::{ApiError, ApiResult, ErrorType};
use crate::state::AppState;

pub struct Bound {
    pub app_id: String,
    pub kind: ProviderKind,
    pub provider: Arc<dyn Provider>,
    secret: Option<SecretString>,
    fence: Arc<dyn Fence>,
}

impl Bound {
    /// A call for one operation of ours; the idempotency key is derived from it. A
    /// call that changes something leaves only once what was read before it is durable.
    pub fn call(&self, operation: &str) -> Call {
        Call::new(&self.app_id, self.secret.clone(), operation).fenced(self.fence.clone())
    }
}

/// What a call that changes something at the provider waits for: every commit a read
/// could have seen is durable (`Db::durable`).
pub fn fence(state: &AppState) -> Arc<dyn Fence> {
    Arc::new(Durable(state.db.clone()))
}

struct Durable(paybridge_store::Db);

impl Fence for Durable {
    fn wait(&self) -> FenceWait<'_> {
        Box::pin(async move { self.0.durable().await.map_err(|e| e.to_string()) })
    }
}

/// The app's provider, ready for calls. An app that is not configured cannot pay.
pub async fn bind(state: &AppState, app: &str) -> ApiResult<Bound> {
    let row = config::get(&state.db, app)
        .await?
        .ok_or_else(not_configured)?;
    let kind = ProviderKind::parse(&row.provider).ok_or_else(not_configured)?;
    let provider: Arc<dyn Provider> = match kind {
        ProviderKind::Stripe => state.stripe.clone(),
        ProviderKind::Sandbox => state.sandbox.clone(),
    };
    Ok(Bound {
        app_id: app.to_owned(),
        kind,
        provider,
        secret: super::config::provider_secret_key(state, &row)?,
        fence: fence(state),
    })
}

fn not_configured() -> ApiError {
    ApiError::conflict(
        "payment_config_missing",
        "This app has no payment provider configured: PUT /v1/payment_config first",
    )
}

/// A provider failure as the caller sees it: a decline is a 402 with the decline
/// code; a refusal or an outage a 502; a missing object a 404; a wrong state a 409.
pub fn provider_error(e: ProviderError) -> ApiError {
    match e {
        ProviderError::Card {
            code,
            decline_code,
            message,
            ..
        } => {
            let mut err = ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                ErrorType::ProviderError,
                code.as_deref().unwrap_or("card_declined"),
                message,
            );
            err.decline_code = decline_code;
            err
        }
        ProviderError::Invalid {
            code,
            param,
            message,
        } => {
            let mut err = ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorType::ProviderError,
                "provider_invalid_request",
                format!(
                    "The provider refused the request: {message}{}",
                    code.map(|c| format!(" ({c})")).unwrap_or_default()
                ),
            );
            err.param = param;
            err
        }
        ProviderError::NotFound { message } => ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequestError,
            "resource_missing",
            message,
        ),
        ProviderError::Authentication { message } => ApiError::new(
            StatusCode::BAD_GATEWAY,
            ErrorType::ProviderError,
            "provider_authentication_failed",
            format!("The provider refused this app's secret key: {message}"),
        ),
        ProviderError::Permission { message } => ApiError::new(
            StatusCode::BAD_GATEWAY,
            ErrorType::ProviderError,
            "provider_permission_denied",
            format!("The provider's key may not do this: {message}"),
        ),
        ProviderError::Unavailable { message } => {
            tracing::warn!(%message, "provider unavailable");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorType::ProviderError,
                "provider_unavailable",
                message,
            )
        }
        ProviderError::Conflict { code, message } => ApiError::new(
            StatusCode::CONFLICT,
            ErrorType::InvalidRequestError,
            &code,
            message,
        ),
    }
}
