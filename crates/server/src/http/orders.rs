//! `/v1/orders` and `/v1/checkout/sessions`: what is being paid for, and the hosted
//! page that pays it.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use paybridge_core::keys::{Permission, Role};
use paybridge_core::Invalid;
use paybridge_store::{checkouts, orders, payments};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult, ErrorBody, OrNotFound};
use crate::http::extract::{Body, Caller, Path, Query};
use crate::http::list::{to_params, List};
use crate::service::orders::{self as service, LineItemInput, OrderSpec};
use crate::service::payments::{
    self as payments_service, start_hosted, HostedSpec, PaymentSpec, Target, Trust, MAX_EXPIRES_IN,
};
use crate::service::views::{CheckoutView, OrderView, PaymentView};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(create_checkout))
        .routes(routes!(get_checkout))
        .routes(routes!(expire_checkout))
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
    /// Created at or after this time (unix seconds).
    #[serde(rename = "created[gte]")]
    pub created_gte: Option<i64>,
    /// Created at or before this time (unix seconds).
    #[serde(rename = "created[lte]")]
    pub created_lte: Option<i64>,
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
    /// Pay an existing order instead of listing lines. A publishable key must also give
    /// the order's `client_secret`.
    pub order: Option<String>,
    /// The order's client secret (from `POST /v1/orders`): with a publishable key, the
    /// proof that this browser was given the order it pays.
    pub client_secret: Option<String>,
    /// An existing customer. A publishable key names one only with a
    /// `customer_session_secret` minted for that customer.
    pub customer: Option<String>,
    /// The `client_secret` of a customer session (`POST /v1/customers/{id}/sessions`,
    /// minted by your server): lets a publishable key check out as that customer and save
    /// a card onto them. It names the customer, so `customer` may be left out.
    pub customer_session_secret: Option<String>,
    pub success_url: String,
    pub cancel_url: String,
    /// Save the card as the customer's default (needs a customer; with a publishable key,
    /// a `customer_session_secret`).
    #[serde(default)]
    pub save_card: bool,
    /// Seconds until the session expires: 1800 to 86400 (default 86400).
    pub expires_in: Option<i64>,
    /// `automatic` (default) or `manual` (authorise now, capture later; server keys).
    pub capture: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// Further Stripe Checkout Session parameters: an allowlist per key. The document's
    /// description is written from the lists the server enforces (`http::openapi`).
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
    let mut w = state.db.autocommit().await?;
    orders::insert(&mut *w, &order).await?;
    w.commit()
        .await
        .map_err(paybridge_store::StoreError::from)?;
    let mut view = OrderView::of(&order);
    view.client_secret = Some(service::client_secret(&state.vault, &order));
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
        &crate::http::list::created(q.created_gte, q.created_lte)?,
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
        if !service::proves(&state.vault, &order, secret.unwrap_or_default()) {
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
    let trust = Trust::of(caller.0.role);
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
    let customer = checkout_customer(&state, &caller, app.as_str(), &body).await?;
    let (new_order, order_id) = match (&body.order, &body.line_items) {
        (Some(o), None) => (None, o.clone()),
        (None, Some(items)) => {
            let order = service::build(
                &state.db,
                app.as_str(),
                &OrderSpec {
                    currency: None,
                    items,
                    customer: customer.as_deref(),
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
    let options = crate::service::payments::provider_options(
        &body.provider_options.unwrap_or_default(),
        Target::CheckoutSession,
        trust,
    )?;
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
                customer.clone(),
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
            customer,
            save_card: body.save_card,
            payment_method: None,
            payment_method_types: vec![],
            application_fee_amount: None,
            transfer_destination: None,
            metadata: body.metadata.unwrap_or_default(),
            provider_options: options,
            saved_card: None,
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
    view.client_secret = Some(service::client_secret(&state.vault, &order));
    view.amount_total = Some(payment.amount);
    view.currency = Some(payment.currency.clone());
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// What a publishable key sees of a checkout session: what the paying page needs (is
/// it open, where to pay, how much), not whose it is or where it returns.
#[derive(serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublicCheckoutView {
    pub id: String,
    /// Always `checkout.session`.
    pub object: &'static str,
    /// `open`, `complete` or `expired`.
    pub status: String,
    /// The hosted page, while the session is open.
    pub url: Option<String>,
    pub mode: String,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
    pub expires_at: i64,
}

/// A checkout session: all of it for server and admin keys, the paying page's part for
/// a publishable key.
#[derive(serde::Serialize, ToSchema)]
#[serde(untagged)]
pub enum CheckoutRead {
    Full(CheckoutView),
    Public(PublicCheckoutView),
}

/// Read a checkout session. A publishable key sees only its status, page, amount and
/// expiry.
#[utoipa::path(get, path = "/v1/checkout/sessions/{id}", tag = "orders", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = CheckoutRead), (status = "4XX", body = ErrorBody)))]
async fn get_checkout(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<CheckoutRead>> {
    let app = caller.app(Permission::CheckoutWrite)?;
    let c = checkouts::get(state.db.reader(), app.as_str(), &id)
        .await
        .or_404("checkout session")?;
    let p = payments::get(state.db.reader(), app.as_str(), &c.payment_id)
        .await
        .ok();
    if caller.0.role != Role::Publishable {
        return Ok(axum::Json(CheckoutRead::Full(CheckoutView::with_payment(
            &c,
            p.as_ref(),
        ))));
    }
    Ok(axum::Json(CheckoutRead::Public(PublicCheckoutView {
        object: "checkout.session",
        url: c.url.clone().filter(|_| c.status == "open"),
        mode: c.mode,
        amount_total: p.as_ref().map(|p| p.amount),
        currency: p.map(|p| p.currency),
        expires_at: c.expires_at,
        status: c.status,
        id: c.id,
    })))
}

/// End an open checkout now (Stripe's `expire`): its page stops taking payment and its
/// payment becomes `expired`; the order stays payable by a new checkout. The SDK's
/// return page calls this when the customer cancels, so the shop learns it from the
/// server (`checkout.expired` on the order's stream). A publishable key may do it
/// knowing the checkout's id, as knowing a session's page is what lets one pay it. A
/// checkout that is already complete answers 409 `checkout_complete`.
#[utoipa::path(post, path = "/v1/checkout/sessions/{id}/expire", tag = "orders", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = CheckoutRead), (status = 409, body = ErrorBody), (status = "4XX", body = ErrorBody)))]
async fn expire_checkout(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<CheckoutRead>> {
    let app = caller.app(Permission::CheckoutWrite)?;
    let c = checkouts::get(state.db.reader(), app.as_str(), &id)
        .await
        .or_404("checkout session")?;
    if c.status == "complete" {
        return Err(ApiError::conflict(
            "checkout_complete",
            "this checkout is already complete",
        ));
    }
    if c.status == "open" {
        let bound = crate::service::provider::bind(&state, app.as_str()).await?;
        payments_service::expire_checkout(&state, &bound, &c).await?;
    }
    let after = checkouts::get(state.db.reader(), app.as_str(), &id)
        .await
        .or_404("checkout session")?;
    if after.status == "complete" {
        return Err(ApiError::conflict(
            "checkout_complete",
            "this checkout was completed before it could be ended",
        ));
    }
    get_checkout(State(state), caller, Path(id)).await
}

/// What a checkout is for: its customer, after the entry checks that a publishable
/// key's request (anyone's) must pass:
/// - paying an existing `order` needs that order's `client_secret`;
/// - naming an existing `customer`, or saving a card onto one, needs a
///   `customer_session_secret` that a server key minted for that customer.
///
/// Server and admin keys pass without them; a secret they give is checked all the same.
async fn checkout_customer(
    state: &AppState,
    caller: &Caller,
    app: &str,
    body: &CreateCheckout,
) -> ApiResult<Option<String>> {
    let browser = caller.0.role == Role::Publishable;
    let mut order_customer = None;
    match (&body.order, &body.client_secret) {
        (Some(id), given) if browser || given.is_some() => {
            // An unknown order and a wrong secret get the same answer: no oracle.
            let order = orders::get(state.db.reader(), app, id).await.ok();
            let given = given.as_deref().unwrap_or_default();
            let proven = order.is_some_and(|o| {
                order_customer = o.customer_id.clone();
                service::proves(&state.vault, &o, given)
            });
            if !proven {
                let mut e = ApiError::not_found("order").with_param("order");
                if browser {
                    e.message = "No such order (a publishable key pays an existing order with its `client_secret`)".into();
                }
                return Err(e);
            }
        }
        (None, Some(_)) => {
            return Err(Invalid::new(
                "client_secret",
                "parameter_unused",
                "`client_secret` proves an existing `order`; it is not used with `line_items`",
            )
            .into())
        }
        _ => {}
    }
    let vouched = match &body.customer_session_secret {
        Some(secret) => Some(
            crate::service::customer_sessions::customer_of(
                state,
                app,
                "customer_session_secret",
                secret,
            )
            .await?,
        ),
        None => None,
    };
    match (&vouched, &body.customer) {
        (Some(v), Some(c)) if v != c => {
            return Err(ApiError::forbidden(
                "The customer session was minted for another customer",
            )
            .with_code("customer_mismatch")
            .with_param("customer"))
        }
        (None, Some(_)) if browser => {
            return Err(ApiError::forbidden(
                "A publishable key names an existing customer only with a `customer_session_secret` your server minted for them (`POST /v1/customers/{id}/sessions`); leave `customer` out to check out a new customer",
            )
            .with_code("customer_session_required")
            .with_param("customer"))
        }
        _ => {}
    }
    // Saving a card onto an order's customer, too. (With no customer at all, saving a
    // card is refused further on as `customer_required`.)
    if browser && body.save_card && vouched.is_none() && order_customer.is_some() {
        return Err(ApiError::forbidden(
            "A publishable key saves a card only onto the customer of a `customer_session_secret` your server minted (`POST /v1/customers/{id}/sessions`)",
        )
        .with_code("customer_session_required")
        .with_param("save_card"));
    }
    Ok(vouched.or_else(|| body.customer.clone()))
}
