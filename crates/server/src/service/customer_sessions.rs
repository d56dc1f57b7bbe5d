//! Customer sessions: the app's server vouches that the browser in front of it belongs
//! to one customer. A publishable key is public, so a browser that names an existing
//! customer (to save a card onto them, or to check out as them) must show a secret
//! that a server key minted for that customer moments before, as Stripe's customer
//! sessions and ephemeral keys work. The secret is random (190 bits), shown once,
//! stored as its SHA-256, and lives minutes.

use paybridge_core::ids::CustomerSessionId;
use paybridge_core::keys::hash_key;
use paybridge_core::Invalid;
use paybridge_store::customer_sessions::{self, CustomerSessionRow};
use paybridge_store::{customers, now};

use super::orders::random;
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::state::AppState;

/// How long a customer session lives unless asked otherwise (Stripe's: 30 minutes).
pub const DEFAULT_TTL: i64 = 30 * 60;
/// The shortest and longest lives a caller may ask for.
pub const MIN_TTL: i64 = 60;
pub const MAX_TTL: i64 = 60 * 60;

/// Mints a session for the customer; returns it with its secret, shown this once.
pub async fn mint(
    state: &AppState,
    app: &str,
    customer: &str,
    expires_in: Option<i64>,
) -> ApiResult<(CustomerSessionRow, String)> {
    let ttl = expires_in.unwrap_or(DEFAULT_TTL);
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Err(Invalid::new(
            "expires_in",
            "parameter_invalid",
            format!("expires_in is {MIN_TTL} to {MAX_TTL} seconds"),
        )
        .into());
    }
    let c = customers::get(state.db.reader(), app, customer)
        .await
        .or_404("customer")?;
    let id = CustomerSessionId::generate().into_string();
    let secret = format!("{id}_secret_{}", random(32));
    let ts = now();
    let row = CustomerSessionRow {
        id,
        app_id: app.to_owned(),
        customer_id: c.id,
        expires_at: ts + ttl,
        created: ts,
    };
    customer_sessions::insert(&state.db, &row, &hash_key(&secret)).await?;
    Ok((row, secret))
}

/// The customer a session's secret speaks for, if it is this app's and still alive.
/// Any other secret (unknown, expired, another app's) gets the same 403.
pub async fn customer_of(
    state: &AppState,
    app: &str,
    param: &str,
    secret: &str,
) -> ApiResult<String> {
    let refused = || {
        ApiError::forbidden(
            "The customer session is unknown or has expired: have your server mint a new one with `POST /v1/customers/{id}/sessions`",
        )
        .with_code("customer_session_invalid")
        .with_param(param)
    };
    if secret.is_empty() || secret.len() > 200 {
        return Err(refused());
    }
    let hash = hash_key(secret);
    // Looked up by its digest, as API keys are: an equality on a hash leaks nothing
    // about the secret through timing.
    let row = customer_sessions::live(&state.db, app, &hash, now())
        .await?
        .ok_or_else(refused)?;
    Ok(row.customer_id)
}
