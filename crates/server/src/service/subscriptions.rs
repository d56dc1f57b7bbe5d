//! Subscriptions: started by a checkout in `subscription` mode (see
//! `payments::start_hosted`) or directly with the customer's saved card; cancelled now
//! or at the period's end. Their state follows the provider's events through the
//! ledger, and so does every paid or failed invoice (a new order each period).

use std::collections::BTreeMap;

use paybridge_core::ids::SubscriptionId;
use paybridge_core::stripe::event::{subscription_reading, META_APP, META_SUBSCRIPTION};
use paybridge_core::stripe::objects::Subscription;
use paybridge_core::{catalog, Invalid, ProviderKind};
use paybridge_provider::NewSubscription;
use paybridge_store::products::ProductRow;
use paybridge_store::subscriptions::{self, SubscriptionRow};
use paybridge_store::{customers, now, products, StoreError};

use super::ledger::{self, UnitOfWork};
use super::provider::{bind, provider_error};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::state::AppState;

/// The recurring product a subscription is for: by our id or its provider price.
pub async fn recurring_product(
    state: &AppState,
    app: &str,
    product: Option<&str>,
    price: Option<&str>,
) -> ApiResult<ProductRow> {
    let p = match (product, price) {
        (Some(id), None) => products::get(&state.db, app, id).await,
        (None, Some(price)) => products::by_provider_price(&state.db, app, price).await,
        _ => {
            return Err(Invalid::new(
                "product",
                "parameter_invalid",
                "give either `product` or `price`",
            )
            .into())
        }
    }
    .map_err(|e| match e {
        StoreError::NotFound => ApiError::not_found("product").with_param(if product.is_some() {
            "product"
        } else {
            "price"
        }),
        other => other.into(),
    })?;
    if p.recurring_interval.is_none() {
        return Err(Invalid::new(
            "product",
            "product_not_recurring",
            format!("product {} is not a subscription product", p.id),
        )
        .into());
    }
    if p.active != 1 {
        return Err(Invalid::new(
            "product",
            "product_inactive",
            format!("product {} is not active", p.id),
        )
        .into());
    }
    Ok(p)
}

/// A new subscription row, before the provider knows it.
pub fn new_row(
    app: &str,
    customer: Option<String>,
    p: &ProductRow,
    quantity: i64,
    checkout: Option<String>,
    metadata: &BTreeMap<String, String>,
) -> SubscriptionRow {
    let ts = now();
    SubscriptionRow {
        id: SubscriptionId::generate().into_string(),
        app_id: app.to_owned(),
        customer_id: customer,
        product_id: Some(p.id.clone()),
        provider_price_id: p.provider_price_id.clone(),
        quantity,
        unit_amount: p.unit_amount,
        currency: p.currency.clone(),
        status: "incomplete".into(),
        status_at: 0,
        provider_subscription_id: None,
        current_period_start: None,
        current_period_end: None,
        cancel_at_period_end: 0,
        canceled_at: None,
        checkout_id: checkout,
        metadata: serde_json::to_string(metadata).unwrap_or_else(|_| "{}".into()),
        created: ts,
        updated: ts,
    }
}

pub struct StartInput {
    pub customer: String,
    pub product: Option<String>,
    pub price: Option<String>,
    pub quantity: Option<i64>,
    pub metadata: BTreeMap<String, String>,
}

/// Starts a subscription charged to the customer's default card.
pub async fn start(state: &AppState, app: &str, input: StartInput) -> ApiResult<SubscriptionRow> {
    catalog::validate_metadata(&input.metadata)?;
    let quantity = input.quantity.unwrap_or(1);
    if !(1..=10_000).contains(&quantity) {
        return Err(Invalid::new(
            "quantity",
            "parameter_invalid",
            "quantity must be 1 to 10000",
        )
        .into());
    }
    let product =
        recurring_product(state, app, input.product.as_deref(), input.price.as_deref()).await?;
    // Each period charges the product's price times the quantity: it is checked as
    // a checkout checks its total (the minimum, the eight digits, the rounding).
    let currency = paybridge_core::Currency::parse(&product.currency)?;
    paybridge_core::Money::new(product.unit_amount, currency)
        .and_then(|m| m.checked_mul(quantity))
        .map_err(|_| {
            Invalid::new(
                "quantity",
                "amount_too_large",
                "the price times the quantity is too large",
            )
        })?
        .validate_charge("quantity")?;
    let customer = customers::get(state.db.reader(), app, &input.customer)
        .await
        .or_404("customer")?;
    let card_id = customer.default_payment_method.clone().ok_or_else(|| {
        Invalid::new("customer", "payment_method_missing", "the customer has no saved card: start the subscription with a checkout in `subscription` mode")
    })?;
    customers::card(&state.db, app, &customer.id, &card_id)
        .await
        .or_404("payment_method")?;
    let bound = bind(state, app).await?;
    if bound.kind == ProviderKind::Stripe && product.provider_price_id.is_none() {
        return Err(Invalid::new(
            "product",
            "provider_price_missing",
            "on Stripe a subscription needs the product's Stripe price: set its provider_price_id (or import the catalog)",
        )
        .into());
    }
    let customer = super::customers::ensure_provider_customer(state, &bound, customer).await?;
    let row = new_row(
        app,
        Some(customer.id.clone()),
        &product,
        quantity,
        None,
        &input.metadata,
    );
    let mut w = state.db.autocommit().await?;
    subscriptions::insert(&mut *w, &row).await?;
    w.commit()
        .await
        .map_err(paybridge_store::StoreError::from)?;
    let mut metadata = input.metadata.clone();
    metadata.insert(META_APP.into(), app.into());
    metadata.insert(META_SUBSCRIPTION.into(), row.id.clone());
    let req = NewSubscription {
        customer: customer.provider_customer_id.clone().unwrap_or_default(),
        price: product.provider_price_id.clone(),
        name: product.name.clone(),
        unit_amount: product.unit_amount,
        currency: product.currency.clone(),
        interval: product
            .recurring_interval
            .clone()
            .unwrap_or_else(|| "month".into()),
        interval_count: product.recurring_interval_count.unwrap_or(1),
        quantity,
        metadata,
    };
    let answer = bound
        .provider
        .create_subscription(&bound.call(&format!("{}_create", row.id)), &req)
        .await
        .map_err(provider_error)?;
    record(state, app, &row.id, &answer).await
}

/// Cancels now, or at the end of the current period.
pub async fn cancel(
    state: &AppState,
    app: &str,
    id: &str,
    at_period_end: bool,
) -> ApiResult<SubscriptionRow> {
    let row = subscriptions::get(state.db.reader(), app, id)
        .await
        .or_404("subscription")?;
    if row.status == "canceled" {
        return Ok(row);
    }
    let provider_id = row.provider_subscription_id.clone().ok_or_else(|| {
        ApiError::conflict(
            "subscription_not_started",
            "the provider has not started this subscription yet",
        )
    })?;
    let bound = bind(state, app).await?;
    let op = if at_period_end {
        "cancel_at_period_end"
    } else {
        "cancel"
    };
    let answer = bound
        .provider
        .cancel_subscription(
            &bound.call(&format!("{id}_{op}")),
            &provider_id,
            at_period_end,
        )
        .await
        .map_err(provider_error)?;
    record(state, app, id, &answer).await
}

/// Applies the provider's answer about a subscription.
pub async fn record(
    state: &AppState,
    app: &str,
    id: &str,
    answer: &Subscription,
) -> ApiResult<SubscriptionRow> {
    let mut reading = subscription_reading(answer, now()).ok_or_else(|| {
        ApiError::internal(format!(
            "unreadable subscription status {:?}",
            answer.status
        ))
    })?;
    reading.ours = Some(id.to_owned());
    let mut tx = state.db.begin().await?;
    let mut uow = UnitOfWork::new();
    ledger::apply_subscription_reading(&mut uow, &mut tx, app, &reading).await?;
    uow.flush(&mut tx).await?;
    let row = subscriptions::get(&mut *tx, app, id).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(row)
}
