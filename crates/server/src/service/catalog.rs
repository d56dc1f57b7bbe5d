//! Importing the provider's catalog: each active price with a fixed amount becomes a
//! product here (or updates the product already standing for it).

use paybridge_core::catalog::{self, Interval, Recurring};
use paybridge_core::ids::ProductId;
use paybridge_core::Currency;
use paybridge_store::products::{self, ProductRow};
use paybridge_store::{now, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

use super::provider::{bind, provider_error};
use crate::error::ApiResult;
use crate::state::AppState;

#[derive(Debug, Default, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct ImportReport {
    pub created: usize,
    pub updated: usize,
    /// Prices without a fixed amount (tiered, metered), or in a currency or amount we
    /// cannot sell.
    pub skipped: usize,
}

pub async fn import(
    state: &AppState,
    app: &str,
    progress: impl Fn(usize, usize),
) -> ApiResult<ImportReport> {
    let bound = bind(state, app).await?;
    let prices = bound
        .provider
        .list_prices(&bound.call(&format!("{app}_list_prices")))
        .await
        .map_err(provider_error)?;
    let mut report = ImportReport::default();
    for (i, price) in prices.iter().enumerate() {
        progress(i + 1, prices.len());
        let (Some(amount), Some(currency)) = (price.unit_amount, price.currency.as_deref()) else {
            report.skipped += 1;
            continue;
        };
        let Ok(currency) = Currency::parse(currency) else {
            report.skipped += 1;
            continue;
        };
        if catalog::validate_unit_amount(amount, currency).is_err() {
            report.skipped += 1;
            continue;
        }
        let recurring = price.recurring.as_ref().and_then(|r| {
            let interval = Interval::parse(r.interval.as_deref()?)?;
            Recurring::new(interval, r.interval_count).ok()
        });
        let product = price.product.as_ref().and_then(|p| p.object());
        let name = product
            .and_then(|p| p.name.clone())
            .or_else(|| price.nickname.clone())
            .unwrap_or_else(|| price.id.clone());
        let name = catalog::validate_name(&name).unwrap_or_else(|_| price.id.clone());
        let description = product.and_then(|p| p.description.clone());
        let product_id = price.product.as_ref().map(|p| p.id().to_owned());
        let active = price.active.unwrap_or(true) && product.and_then(|p| p.active).unwrap_or(true);
        let apply = |p: &mut ProductRow| {
            p.name = name.clone();
            p.description = description.clone();
            p.unit_amount = amount;
            p.currency = currency.code().to_owned();
            p.recurring_interval = recurring.map(|r| r.interval.as_str().to_owned());
            p.recurring_interval_count = recurring.map(|r| i64::from(r.interval_count));
            p.provider_product_id = product_id.clone();
            p.provider_price_id = Some(price.id.clone());
            p.active = i64::from(active);
        };
        match products::by_provider_price(&state.db, app, &price.id).await {
            Ok(existing) => {
                products::update(&state.db, app, &existing.id, |p| {
                    apply(p);
                    Ok::<_, StoreError>(())
                })
                .await?;
                report.updated += 1;
            }
            Err(StoreError::NotFound) => {
                let ts = now();
                let mut row = ProductRow {
                    id: ProductId::generate().into_string(),
                    app_id: app.to_owned(),
                    name: String::new(),
                    description: None,
                    unit_amount: 0,
                    currency: String::new(),
                    recurring_interval: None,
                    recurring_interval_count: None,
                    provider_product_id: None,
                    provider_price_id: None,
                    active: 1,
                    metadata: "{}".into(),
                    created: ts,
                    updated: ts,
                };
                apply(&mut row);
                products::insert(&state.db, &row).await?;
                report.created += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(report)
}
