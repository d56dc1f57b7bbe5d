//! Customer self-service (issue 17, part 4): a provider customer portal session for one
//! of the app's customers, with the URL to send them to and where they come back. On
//! Stripe, its Billing customer portal; on the sandbox, its built-in portal page.

use paybridge_core::Invalid;
use paybridge_store::customers;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiResult, OrNotFound};
use crate::service::customers::ensure_provider_customer;
use crate::service::provider::{bind, provider_error};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct PortalSessionView {
    /// Always `portal_session`.
    pub object: &'static str,
    /// The provider's session id (`bps_…`).
    pub id: String,
    /// Our customer (`customer_…`).
    pub customer: String,
    /// Where to send the customer: short-lived, single customer.
    pub url: String,
    pub return_url: String,
}

fn valid_return_url(u: &str) -> Result<(), Invalid> {
    let ok = u.len() <= 2048
        && url::Url::parse(u)
            .is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.host().is_some());
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            "return_url",
            "invalid_url",
            "return_url must be an absolute http(s) URL of at most 2048 characters",
        ))
    }
}

pub async fn create(
    state: &AppState,
    app: &str,
    customer: &str,
    return_url: &str,
) -> ApiResult<PortalSessionView> {
    valid_return_url(return_url)?;
    let row = customers::get(state.db.reader(), app, customer)
        .await
        .or_404("customer")?;
    let bound = bind(state, app).await?;
    let row = ensure_provider_customer(state, &bound, row).await?;
    let provider_customer = row.provider_customer_id.clone().unwrap_or_default();
    let nonce = ulid::Ulid::new().to_string().to_ascii_lowercase();
    let s = bound
        .provider
        .create_portal_session(
            &bound.call(&format!("{}_portal_{nonce}", row.id)),
            &provider_customer,
            return_url,
        )
        .await
        .map_err(provider_error)?;
    Ok(PortalSessionView {
        object: "portal_session",
        id: s.id,
        customer: row.id,
        url: s.url,
        return_url: s.return_url.unwrap_or_else(|| return_url.to_owned()),
    })
}
