//! Customers, mirrored to the provider, and their saved cards.

use std::collections::BTreeMap;

use paybridge_core::ids::{CardId, CustomerId};
use paybridge_core::{catalog, Invalid};
use paybridge_provider::NewCustomer;
use paybridge_store::customers::{self, CardRow, CustomerRow};
use paybridge_store::now;

use super::provider::{bind, provider_error, Bound};
use crate::error::{ApiResult, OrNotFound};
use crate::state::AppState;

pub struct CustomerInput {
    pub external_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// Creates the customer, or updates the one with the same `external_id`, and makes
/// sure the provider knows it.
pub async fn upsert(
    state: &AppState,
    app: &str,
    input: CustomerInput,
) -> ApiResult<(CustomerRow, bool)> {
    let external_id = input.external_id.trim().to_owned();
    if external_id.is_empty() || external_id.len() > 255 {
        return Err(Invalid::new(
            "external_id",
            "parameter_invalid",
            "external_id must be 1 to 255 characters",
        )
        .into());
    }
    if let Some(e) = &input.email {
        if e.len() > 320 || !e.contains('@') || e.chars().any(char::is_whitespace) {
            return Err(Invalid::new(
                "email",
                "email_invalid",
                "email must be an address like name@example.com",
            )
            .into());
        }
    }
    if let Some(n) = &input.name {
        if n.chars().count() > 250 || n.chars().any(char::is_control) {
            return Err(Invalid::new(
                "name",
                "parameter_invalid",
                "name is at most 250 characters, without control characters",
            )
            .into());
        }
    }
    catalog::validate_metadata(&input.metadata)?;
    let ts = now();
    let (row, created) = customers::upsert(
        &state.db,
        &CustomerRow {
            id: CustomerId::generate().into_string(),
            app_id: app.to_owned(),
            external_id,
            email: input.email,
            name: input.name,
            metadata: serde_json::to_string(&input.metadata).unwrap_or_else(|_| "{}".into()),
            provider_customer_id: None,
            default_payment_method: None,
            created: ts,
            updated: ts,
        },
    )
    .await?;
    let bound = bind(state, app).await?;
    let row = ensure_provider_customer(state, &bound, row).await?;
    Ok((row, created))
}

/// The provider's customer for ours, created (idempotently) if it does not exist yet.
pub async fn ensure_provider_customer(
    state: &AppState,
    bound: &Bound,
    mut row: CustomerRow,
) -> ApiResult<CustomerRow> {
    if row.provider_customer_id.is_some() {
        return Ok(row);
    }
    let mut metadata = BTreeMap::new();
    metadata.insert("pb_customer".to_owned(), row.id.clone());
    metadata.insert("pb_external_id".to_owned(), row.external_id.clone());
    let c = bound
        .provider
        .create_customer(
            &bound.call(&format!("{}_create", row.id)),
            &NewCustomer {
                email: row.email.clone(),
                name: row.name.clone(),
                metadata,
            },
        )
        .await
        .map_err(provider_error)?;
    customers::set_provider_id(&state.db, &row.app_id, &row.id, &c.id).await?;
    row.provider_customer_id = Some(c.id);
    Ok(row)
}

/// Attaches a payment method (a provider id, or a test token like `pm_card_visa`).
pub async fn attach_card(
    state: &AppState,
    app: &str,
    customer: &str,
    payment_method: &str,
    make_default: bool,
) -> ApiResult<(CardRow, Option<String>)> {
    if payment_method.is_empty()
        || payment_method.len() > 255
        || payment_method.chars().any(char::is_whitespace)
    {
        return Err(Invalid::new(
            "payment_method",
            "parameter_invalid",
            "payment_method must be a provider payment method id",
        )
        .into());
    }
    let row = customers::get(state.db.reader(), app, customer)
        .await
        .or_404("customer")?;
    let bound = bind(state, app).await?;
    let row = ensure_provider_customer(state, &bound, row).await?;
    let provider_customer = row.provider_customer_id.clone().unwrap_or_default();
    let pm = bound
        .provider
        .attach_payment_method(
            &bound.call(&format!("{customer}_attach_{payment_method}")),
            &provider_customer,
            payment_method,
        )
        .await
        .map_err(|e| provider_error(e).with_param("payment_method"))?;
    let card = pm.card.unwrap_or_default();
    let mut w = state.db.autocommit().await?;
    let saved = customers::save_card(
        &mut *w,
        &CardRow {
            id: CardId::generate().into_string(),
            app_id: app.to_owned(),
            customer_id: customer.to_owned(),
            provider_payment_method_id: pm.id.clone(),
            brand: card.brand,
            last4: card.last4,
            exp_month: card.exp_month,
            exp_year: card.exp_year,
            detached: 0,
            created: now(),
        },
    )
    .await?;
    w.commit()
        .await
        .map_err(paybridge_store::StoreError::from)?;
    let default = if make_default || row.default_payment_method.is_none() {
        set_default(state, app, customer, &saved.id).await?;
        Some(saved.id.clone())
    } else {
        row.default_payment_method
    };
    Ok((saved, default))
}

pub async fn set_default(state: &AppState, app: &str, customer: &str, card: &str) -> ApiResult<()> {
    let row = customers::get(state.db.reader(), app, customer)
        .await
        .or_404("customer")?;
    let c = customers::card(&state.db, app, customer, card)
        .await
        .or_404("payment_method")?;
    let bound = bind(state, app).await?;
    if let Some(pc) = &row.provider_customer_id {
        bound
            .provider
            .set_default_payment_method(
                &bound.call(&format!("{customer}_default_{card}")),
                pc,
                &c.provider_payment_method_id,
            )
            .await
            .map_err(provider_error)?;
    }
    let mut w = state.db.autocommit().await?;
    customers::set_default_payment_method(&mut *w, app, customer, Some(card)).await?;
    w.commit()
        .await
        .map_err(paybridge_store::StoreError::from)?;
    Ok(())
}

pub async fn detach_card(state: &AppState, app: &str, customer: &str, card: &str) -> ApiResult<()> {
    let c = customers::card(&state.db, app, customer, card)
        .await
        .or_404("payment_method")?;
    let bound = bind(state, app).await?;
    bound
        .provider
        .detach_payment_method(
            &bound.call(&format!("{card}_detach")),
            &c.provider_payment_method_id,
        )
        .await
        .map_err(provider_error)?;
    customers::detach_card(&state.db, app, customer, card)
        .await
        .or_404("payment_method")?;
    Ok(())
}
