//! `/v1/payments`: payment links, payment intents, off-session charges of saved cards,
//! capture and cancel.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use paybridge_core::keys::Permission;
use paybridge_core::Invalid;
use paybridge_store::payments::{self, Filter};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, ErrorBody, OrNotFound};
use crate::http::extract::{Body, Caller, Path, Query};
use crate::http::list::{to_params, List};
use crate::service::orders::{build, LineItemInput, OrderSpec};
use crate::service::payments::{self as service, HostedSpec, PaymentSpec, MAX_EXPIRES_IN};
use crate::service::views::PaymentView;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_payment, list_payments))
        .routes(routes!(get_payment))
        .routes(routes!(capture_payment))
        .routes(routes!(cancel_payment))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePayment {
    /// The order to pay; or give `amount` and `currency` for a one-line order.
    pub order: Option<String>,
    /// Minor units. With `order`: part of what is left to pay (default: all of it).
    pub amount: Option<i64>,
    pub currency: Option<String>,
    /// `payment_link` (a hosted page), `payment_intent` (a client secret for your own
    /// card form) or `card` (charge a saved card now, off-session).
    pub method: String,
    /// `automatic` (default) or `manual` (authorise now, capture later).
    pub capture: Option<String>,
    pub customer: Option<String>,
    /// For `card`: the saved card (default: the customer's default card).
    pub payment_method: Option<String>,
    /// Default `["card"]`.
    pub payment_method_types: Option<Vec<String>>,
    /// Save the card used as the customer's default.
    #[serde(default)]
    pub save_card: bool,
    /// For `payment_link`.
    pub success_url: Option<String>,
    /// For `payment_link`.
    pub cancel_url: Option<String>,
    /// For `payment_link`: seconds until the page expires (1800 to 86400).
    pub expires_in: Option<i64>,
    /// Connect: the platform's fee out of a destination charge.
    pub application_fee_amount: Option<i64>,
    /// Connect: one of this app's connected accounts (`account_…` or its `acct_…`)
    /// receiving the charge.
    pub transfer_destination: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// Further Stripe parameters: an allowlist. The document's description is written from
    /// the lists the server enforces (`http::openapi`).
    #[schema(value_type = Option<Object>)]
    pub provider_options: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CapturePayment {
    /// Minor units; default all that is capturable. The rest is released.
    pub amount: Option<i64>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PaymentQuery {
    pub order: Option<String>,
    pub customer: Option<String>,
    /// A payment status (`requires_action`: waiting for its customer to authenticate).
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub starting_after: Option<String>,
    /// Created at or after this time (unix seconds).
    #[serde(rename = "created[gte]")]
    pub created_gte: Option<i64>,
    /// Created at or before this time (unix seconds).
    #[serde(rename = "created[lte]")]
    pub created_lte: Option<i64>,
    /// At least this amount, in minor units.
    #[serde(rename = "amount[gte]")]
    pub amount_gte: Option<i64>,
    /// At most this amount, in minor units.
    #[serde(rename = "amount[lte]")]
    pub amount_lte: Option<i64>,
    /// The customer's email (any case).
    pub email: Option<String>,
    /// A product on the payment's order (`product_…`).
    pub product: Option<String>,
    /// The last 4 digits of the card paid (or declined) with.
    pub last4: Option<String>,
    /// The payment's currency (`usd`, `jpy`, …): the amount filters' unit.
    pub currency: Option<String>,
}

/// The store's filter for a list or an export, checked: a typo is a 400, not an empty
/// list.
pub(crate) fn filter_of(q: &PaymentQuery) -> Result<Filter<'_>, crate::error::ApiError> {
    for (param, v) in [("amount[gte]", q.amount_gte), ("amount[lte]", q.amount_lte)] {
        if v.is_some_and(|v| v < 0) {
            return Err(
                Invalid::new(param, "parameter_invalid", "amounts are not negative").into(),
            );
        }
    }
    if let Some(p) = &q.product {
        let ok = p.starts_with("product_")
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(Invalid::new(
                "product",
                "parameter_invalid",
                "product is a `product_…` id",
            )
            .into());
        }
    }
    let email = crate::http::list::email_param("email", q.email.as_deref())?;
    if let Some(l) = &q.last4 {
        if l.len() != 4 || !l.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid::new(
                "last4",
                "parameter_invalid",
                "last4 is the last 4 digits of a card, such as 4242",
            )
            .into());
        }
    }
    let currency = match &q.currency {
        Some(c) => Some(paybridge_core::Currency::parse(c)?),
        None => None,
    };
    Ok(Filter {
        order: q.order.as_deref(),
        customer: q.customer.as_deref(),
        status: crate::http::list::known_status(
            q.status.as_deref(),
            &paybridge_core::payment::PaymentStatus::ALL.map(|s| s.as_str()),
        )?,
        created: crate::http::list::created(q.created_gte, q.created_lte)?,
        amount_gte: q.amount_gte,
        amount_lte: q.amount_lte,
        email,
        product: q.product.as_deref(),
        last4: q.last4.as_deref(),
        currency: currency.map(|c| c.code()),
    })
}

fn with_secret(state: &AppState, p: &payments::PaymentRow) -> PaymentView {
    let mut v = PaymentView::of(p);
    v.client_secret = service::client_secret(state, p);
    v
}

/// Take a payment (server key). A declined card answers 402 with its decline code,
/// and the payment is recorded as `failed`. A saved card whose bank wants the customer
/// to authenticate the charge (3-D Secure) answers 201 with the payment
/// `requires_action` and `next_action.url`, the page where the customer does it; the
/// app gets `payment.requires_action` too.
#[utoipa::path(post, path = "/v1/payments", tag = "payments", request_body = CreatePayment,
    security(("bearer" = [])),
    responses((status = 201, body = PaymentView), (status = 402, body = ErrorBody), (status = "4XX", body = ErrorBody)))]
async fn create_payment(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<CreatePayment>,
) -> ApiResult<(StatusCode, axum::Json<PaymentView>)> {
    let app = caller.app(Permission::PaymentsWrite)?.clone();
    let method: &'static str = match body.method.as_str() {
        "payment_link" => "payment_link",
        "payment_intent" => "payment_intent",
        "card" => "card",
        _ => {
            return Err(Invalid::new(
                "method",
                "parameter_invalid",
                "method is `payment_link`, `payment_intent` or `card`",
            )
            .into())
        }
    };
    let manual_capture = match body.capture.as_deref() {
        None | Some("automatic") => false,
        Some("manual") => true,
        Some(_) => {
            return Err(Invalid::new(
                "capture",
                "parameter_invalid",
                "capture is `automatic` or `manual`",
            )
            .into())
        }
    };
    // Checked before anything is built or stored.
    if let Some(m) = &body.metadata {
        paybridge_core::catalog::validate_metadata(m)?;
    }
    if method != "payment_link" {
        let hosted_only = [
            ("success_url", body.success_url.is_some()),
            ("cancel_url", body.cancel_url.is_some()),
            ("expires_in", body.expires_in.is_some()),
        ];
        if let Some((param, _)) = hosted_only.iter().find(|(_, given)| *given) {
            return Err(Invalid::new(
                *param,
                "parameter_unused",
                format!("`{param}` is for `method: payment_link` only"),
            )
            .into());
        }
    }
    let transfer_destination = match &body.transfer_destination {
        Some(d) => Some(
            crate::service::connect::destination(&state, app.as_str(), "transfer_destination", d)
                .await?,
        ),
        None => None,
    };
    let (new_order, order_id, amount) = match (&body.order, body.amount) {
        (Some(o), amount) => {
            if let (Some(c), Ok(order)) = (
                &body.currency,
                paybridge_store::orders::get(state.db.reader(), app.as_str(), o).await,
            ) {
                if !c.eq_ignore_ascii_case(&order.currency) {
                    return Err(Invalid::new(
                        "currency",
                        "currency_mismatch",
                        format!("the order is in {}", order.currency),
                    )
                    .into());
                }
            }
            (None, o.clone(), amount)
        }
        (None, Some(amount)) => {
            let items = [LineItemInput {
                product: None,
                price: None,
                name: Some("Payment".into()),
                unit_amount: Some(amount),
                quantity: Some(1),
            }];
            let order = build(
                &state.db,
                app.as_str(),
                &OrderSpec {
                    currency: Some(
                        body.currency
                            .as_deref()
                            .ok_or_else(|| Invalid::missing("currency"))?,
                    ),
                    items: &items,
                    customer: body.customer.as_deref(),
                    metadata: BTreeMap::new(),
                    allow_ad_hoc: true,
                    mode: "payment",
                },
            )
            .await
            .map_err(|mut e| {
                if e.param
                    .as_deref()
                    .is_some_and(|p| p.ends_with("unit_amount"))
                {
                    e.param = Some("amount".into());
                }
                e
            })?;
            let id = order.id.clone();
            (Some(order), id, None)
        }
        (None, None) => {
            return Err(Invalid::new(
                "order",
                "parameter_missing",
                "give `order`, or `amount` and `currency`",
            )
            .into())
        }
    };
    let spec = PaymentSpec {
        method,
        manual_capture,
        amount,
        customer: body.customer,
        save_card: body.save_card,
        payment_method: body.payment_method,
        payment_method_types: body.payment_method_types.unwrap_or_default(),
        application_fee_amount: body.application_fee_amount,
        transfer_destination,
        metadata: body.metadata.unwrap_or_default(),
        provider_options: service::provider_options(
            &body.provider_options.unwrap_or_default(),
            if method == "payment_link" {
                service::Target::CheckoutSession
            } else {
                service::Target::PaymentIntent
            },
            service::Trust::of(caller.0.role),
        )?,
        saved_card: None,
    };
    let p = if method == "payment_link" {
        let hosted = HostedSpec {
            success_url: body
                .success_url
                .ok_or_else(|| Invalid::missing("success_url"))?,
            cancel_url: body
                .cancel_url
                .ok_or_else(|| Invalid::missing("cancel_url"))?,
            expires_in: body.expires_in.unwrap_or(MAX_EXPIRES_IN),
            subscription: None,
        };
        service::start_hosted(&state, app.as_str(), new_order, &order_id, spec, hosted)
            .await?
            .1
    } else {
        service::start_intent(&state, app.as_str(), new_order, &order_id, spec).await?
    };
    Ok((StatusCode::CREATED, axum::Json(with_secret(&state, &p))))
}

#[utoipa::path(get, path = "/v1/payments", tag = "payments", params(PaymentQuery),
    security(("bearer" = [])),
    responses((status = 200, body = List<PaymentView>), (status = "4XX", body = ErrorBody)))]
async fn list_payments(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<PaymentQuery>,
) -> ApiResult<axum::Json<List<PaymentView>>> {
    let app = caller.app(Permission::PaymentsRead)?;
    let filter = filter_of(&q)?;
    let page = payments::list(
        &state.db,
        app.as_str(),
        &filter,
        &to_params(q.limit, q.starting_after.clone())?,
    )
    .await?;
    Ok(axum::Json(List::from_page(page, |p| PaymentView::of(&p))))
}

#[utoipa::path(get, path = "/v1/payments/{id}", tag = "payments", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = PaymentView), (status = "4XX", body = ErrorBody)))]
async fn get_payment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<PaymentView>> {
    let app = caller.app(Permission::PaymentsRead)?;
    let p = payments::get(state.db.reader(), app.as_str(), &id)
        .await
        .or_404("payment")?;
    Ok(axum::Json(with_secret(&state, &p)))
}

/// Capture an authorised payment, fully or partly (server key).
#[utoipa::path(post, path = "/v1/payments/{id}/capture", tag = "payments", params(("id" = String, Path)),
    request_body = Option<CapturePayment>, security(("bearer" = [])),
    responses((status = 200, body = PaymentView), (status = "4XX", body = ErrorBody)))]
async fn capture_payment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<CapturePayment>,
) -> ApiResult<axum::Json<PaymentView>> {
    let app = caller.app(Permission::PaymentsWrite)?;
    let p = service::capture(&state, app.as_str(), &id, body.amount).await?;
    Ok(axum::Json(PaymentView::of(&p)))
}

/// Cancel a payment that has not taken money (server key).
#[utoipa::path(post, path = "/v1/payments/{id}/cancel", tag = "payments", params(("id" = String, Path)),
    request_body = Option<Empty>, security(("bearer" = [])),
    responses((status = 200, body = PaymentView), (status = "4XX", body = ErrorBody)))]
async fn cancel_payment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(_empty): Body<Empty>,
) -> ApiResult<axum::Json<PaymentView>> {
    let app = caller.app(Permission::PaymentsWrite)?;
    let p = service::cancel(&state, app.as_str(), &id).await?;
    Ok(axum::Json(PaymentView::of(&p)))
}
