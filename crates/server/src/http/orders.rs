//! `/v1/orders` and `/v1/checkout/sessions`: what is being paid for, and the hosted
//! page that pays it.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use paybridge_core::keys::{Permission, Role};
use paybridge_core::Invalid;
use paybridge_store::{checkouts, orders, payments};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult, ErrorBody, OrNotFound};
use crate::http::extract::{Body, Caller, Path, Query};
use crate::http::list::{to_params, List};
use crate::service::orders::{self as service, LineItemInput, OrderSpec};
use crate::service::payments::{start_hosted, HostedSpec, PaymentSpec, MAX_EXPIRES_IN};
use crate::service::views::{CheckoutView, OrderView, PaymentView};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(create_checkout))
        .routes(routes!(get_checkout))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    pub customer: Option<String>,
    /// Needed for ad hoc lines; otherwise the products' currency.
    pub currency: Option<String>,
    pub line_items: Vec<LineItemInput>,
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    pub customer: Option<String>,
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub starting_after: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SecretQuery {
    /// The order's client secret: lets a publishable key read this one order.
    pub client_secret: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCheckout {
    /// Catalog lines: `{product | price, quantity}`. Not with `order`.
    pub line_items: Option<Vec<LineItemInput>>,
    /// `payment` (default) or `subscription`.
    pub mode: Option<String>,
    /// Pay an existing order instead of listing lines.
    pub order: Option<String>,
    pub customer: Option<String>,
    pub success_url: String,
    pub cancel_url: String,
    /// Save the card as the customer's default (needs `customer`).
    #[serde(default)]
    pub save_card: bool,
    /// Seconds until the session expires: 1800 to 86400 (default 86400).
    pub expires_in: Option<i64>,
    /// `automatic` (default) or `manual` (authorise now, capture later; server keys).
    pub capture: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// Further Stripe Checkout parameters passed through (`locale`, `allow_promotion_codes`, …).
    #[schema(value_type = Option<Object>)]
    pub provider_options: Option<BTreeMap<String, serde_json::Value>>,
}

/// Create an order from catalog products or (server keys) ad hoc lines.
#[utoipa::path(post, path = "/v1/orders", tag = "orders", request_body = CreateOrder,
    security(("bearer" = [])),
    responses((status = 201, body = OrderView), (status = "4XX", body = ErrorBody)))]
async fn create_order(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<CreateOrder>,
) -> ApiResult<(StatusCode, axum::Json<OrderView>)> {
    let app = caller.app(Permission::OrdersWrite)?;
    let order = service::build(
        &state.db,
        app.as_str(),
        &OrderSpec {
            currency: body.currency.as_deref(),
            items: &body.line_items,
            customer: body.customer.as_deref(),
            metadata: body.metadata.unwrap_or_default(),
            allow_ad_hoc: true,
            mode: "payment",
        },
    )
    .await?;
    orders::insert(state.db.writer(), &order).await?;
    let mut view = OrderView::of(&order);
    view.client_secret = Some(order.client_secret);
    view.payments = Some(Vec::new());
    Ok((StatusCode::CREATED, axum::Json(view)))
}

#[utoipa::path(get, path = "/v1/orders", tag = "orders", params(OrderQuery),
    security(("bearer" = [])),
    responses((status = 200, body = List<OrderView>), (status = "4XX", body = ErrorBody)))]
async fn list_orders(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<OrderQuery>,
) -> ApiResult<axum::Json<List<OrderView>>> {
    let app = caller.app(Permission::OrdersRead)?;
    let page = orders::list(
        &state.db,
        app.as_str(),
        q.customer.as_deref(),
        crate::http::list::known_status(
            q.status.as_deref(),
            &paybridge_core::payment::OrderStatus::ALL.map(|s| s.as_str()),
        )?,
        &to_params(q.limit, q.starting_after)?,
    )
    .await?;
    Ok(axum::Json(List::from_page(page, |o| OrderView::of(&o))))
}

/// The caller may read this order: an order key, or a publishable key with the
/// order's client secret.
pub async fn readable_order(
    state: &AppState,
    caller: &Caller,
    id: &str,
    secret: Option<&str>,
) -> ApiResult<orders::OrderRow> {
    if caller.0.role == Role::Publishable {
        let app = caller
            .0
            .app_id
            .as_ref()
            .ok_or_else(|| ApiError::not_found("order"))?;
        let order = orders::get(state.db.reader(), app.as_str(), id)
            .await
            .or_404("order")?;
        let given = secret.unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(order.client_secret.as_bytes())) {
            return Err(ApiError::not_found("order"));
        }
        return Ok(order);
    }
    let app = caller.app(Permission::OrdersRead)?;
    orders::get(state.db.reader(), app.as_str(), id)
        .await
        .or_404("order")
}

/// Read an order with its payments (server key; publishable with `?client_secret=`).
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders", params(("id" = String, Path), SecretQuery),
    security(("bearer" = [])),
    responses((status = 200, body = OrderView), (status = "4XX", body = ErrorBody)))]
async fn get_order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<SecretQuery>,
) -> ApiResult<axum::Json<OrderView>> {
    let order = readable_order(&state, &caller, &id, q.client_secret.as_deref()).await?;
    let ps = payments::of_order(state.db.reader(), &order.app_id, &order.id).await?;
    let rs =
        paybridge_store::refunds::of_order(state.db.reader(), &order.app_id, &order.id).await?;
    let mut view = OrderView::of(&order);
    view.payments = Some(ps.iter().map(PaymentView::of).collect());
    view.refunds = Some(
        rs.iter()
            .map(crate::service::views::RefundView::of)
            .collect(),
    );
    Ok(axum::Json(view))
}

/// Start a hosted checkout (publishable or server key). Completion arrives by the
/// provider's webhook; the browser's redirect to `success_url` changes nothing.
#[utoipa::path(post, path = "/v1/checkout/sessions", tag = "orders", request_body = CreateCheckout,
    security(("bearer" = [])),
    responses((status = 201, body = CheckoutView), (status = "4XX", body = ErrorBody)))]
async fn create_checkout(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<CreateCheckout>,
) -> ApiResult<(StatusCode, axum::Json<CheckoutView>)> {
    let app = caller.app(Permission::CheckoutWrite)?.clone();
    let mode: &'static str = match body.mode.as_deref() {
        None | Some("payment") => "payment",
        Some("subscription") => "subscription",
        Some(_) => {
            return Err(Invalid::new(
                "mode",
                "parameter_invalid",
                "mode is `payment` or `subscription`",
            )
            .into())
        }
    };
    if mode == "subscription" {
        if body.save_card || body.capture.is_some() || body.order.is_some() {
            return Err(Invalid::new(
                "mode",
                "parameter_invalid",
                "a subscription checkout takes `line_items` (one recurring product), not `order`, `capture` or `save_card`",
            )
            .into());
        }
        if body.line_items.as_ref().is_some_and(|l| l.len() != 1) {
            return Err(Invalid::new(
                "line_items",
                "parameter_invalid",
                "a subscription checkout has exactly one line item",
            )
            .into());
        }
    }
    let manual = match body.capture.as_deref() {
        None | Some("automatic") => false,
        Some("manual") if caller.0.role != Role::Publishable => true,
        Some("manual") => {
            return Err(
                ApiError::forbidden("only a server key may ask for manual capture")
                    .with_param("capture"),
            )
        }
        Some(_) => {
            return Err(Invalid::new(
                "capture",
                "parameter_invalid",
                "capture is `automatic` or `manual`",
            )
            .into())
        }
    };
    let (new_order, order_id) = match (&body.order, &body.line_items) {
        (Some(o), None) => (None, o.clone()),
        (None, Some(items)) => {
            let order = service::build(
                &state.db,
                app.as_str(),
                &OrderSpec {
                    currency: None,
                    items,
                    customer: body.customer.as_deref(),
                    metadata: body.metadata.clone().unwrap_or_default(),
                    allow_ad_hoc: false,
                    mode,
                },
            )
            .await?;
            let id = order.id.clone();
            (Some(order), id)
        }
        _ => {
            return Err(Invalid::new(
                "line_items",
                "parameter_invalid",
                "give either `line_items` or `order`",
            )
            .into())
        }
    };
    let options =
        crate::service::payments::provider_options(&body.provider_options.unwrap_or_default())?;
    let subscription = match (mode, &body.line_items) {
        ("subscription", Some(items)) => {
            let item = &items[0];
            let product = crate::service::subscriptions::recurring_product(
                &state,
                app.as_str(),
                item.product.as_deref(),
                item.price.as_deref(),
            )
            .await?;
            Some(crate::service::subscriptions::new_row(
                app.as_str(),
                body.customer.clone(),
                &product,
                item.quantity.unwrap_or(1),
                None,
                &body.metadata.clone().unwrap_or_default(),
            ))
        }
        _ => None,
    };
    let (checkout, payment, order) = start_hosted(
        &state,
        app.as_str(),
        new_order,
        &order_id,
        PaymentSpec {
            method: "checkout",
            manual_capture: manual,
            amount: None,
            customer: body.customer,
            save_card: body.save_card,
            payment_method: None,
            payment_method_types: vec![],
            application_fee_amount: None,
            transfer_destination: None,
            metadata: body.metadata.unwrap_or_default(),
            provider_options: options,
        },
        HostedSpec {
            success_url: body.success_url,
            cancel_url: body.cancel_url,
            expires_in: body.expires_in.unwrap_or(MAX_EXPIRES_IN),
            subscription,
        },
    )
    .await?;
    let mut view = CheckoutView::of(&checkout);
    view.client_secret = Some(order.client_secret.clone());
    view.amount_total = Some(payment.amount);
    view.currency = Some(payment.currency.clone());
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// Read a checkout session.
#[utoipa::path(get, path = "/v1/checkout/sessions/{id}", tag = "orders", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = CheckoutView), (status = "4XX", body = ErrorBody)))]
async fn get_checkout(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<CheckoutView>> {
    let app = caller.app(Permission::CheckoutWrite)?;
    let c = checkouts::get(state.db.reader(), app.as_str(), &id)
        .await
        .or_404("checkout session")?;
    Ok(axum::Json(CheckoutView::of(&c)))
}
