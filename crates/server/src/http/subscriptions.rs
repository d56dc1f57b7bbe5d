//! `/v1/subscriptions`: start with a saved card (or by a checkout in `subscription`
//! mode), cancel now or at the period's end.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use paybridge_core::keys::Permission;
use paybridge_store::subscriptions;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, ErrorBody, OrNotFound};
use crate::http::extract::{Body, Caller, Path, Query};
use crate::http::list::{to_params, List};
use crate::service::subscriptions::{self as service, StartInput};
use crate::service::views::SubscriptionView;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_subscription, list_subscriptions))
        .routes(routes!(get_subscription))
        .routes(routes!(cancel_subscription))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartSubscription {
    pub customer: String,
    /// A recurring product (`product_…`)…
    pub product: Option<String>,
    /// …or its provider price (`price_…`).
    pub price: Option<String>,
    pub quantity: Option<i64>,
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CancelSubscription {
    /// Keep it until the current period ends (default: cancel now).
    #[serde(default)]
    pub at_period_end: bool,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SubscriptionQuery {
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

/// Start a subscription charged to the customer's default card (server key).
#[utoipa::path(post, path = "/v1/subscriptions", tag = "subscriptions", request_body = StartSubscription,
    security(("bearer" = [])),
    responses((status = 201, body = SubscriptionView), (status = "4XX", body = ErrorBody)))]
async fn start_subscription(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<StartSubscription>,
) -> ApiResult<(StatusCode, axum::Json<SubscriptionView>)> {
    let app = caller.app(Permission::SubscriptionsWrite)?;
    let s = service::start(
        &state,
        app.as_str(),
        StartInput {
            customer: body.customer,
            product: body.product,
            price: body.price,
            quantity: body.quantity,
            metadata: body.metadata.unwrap_or_default(),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(SubscriptionView::of(&s))))
}

#[utoipa::path(get, path = "/v1/subscriptions", tag = "subscriptions", params(SubscriptionQuery),
    security(("bearer" = [])),
    responses((status = 200, body = List<SubscriptionView>), (status = "4XX", body = ErrorBody)))]
async fn list_subscriptions(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<SubscriptionQuery>,
) -> ApiResult<axum::Json<List<SubscriptionView>>> {
    let app = caller.app(Permission::SubscriptionsRead)?;
    let page = subscriptions::list(
        &state.db,
        app.as_str(),
        q.customer.as_deref(),
        crate::http::list::known_status(
            q.status.as_deref(),
            &paybridge_core::payment::SubscriptionStatus::ALL.map(|s| s.as_str()),
        )?,
        &crate::http::list::created(q.created_gte, q.created_lte)?,
        &to_params(q.limit, q.starting_after)?,
    )
    .await?;
    Ok(axum::Json(List::from_page(page, |s| {
        SubscriptionView::of(&s)
    })))
}

#[utoipa::path(get, path = "/v1/subscriptions/{id}", tag = "subscriptions", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = SubscriptionView), (status = "4XX", body = ErrorBody)))]
async fn get_subscription(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<SubscriptionView>> {
    let app = caller.app(Permission::SubscriptionsRead)?;
    let s = subscriptions::get(state.db.reader(), app.as_str(), &id)
        .await
        .or_404("subscription")?;
    Ok(axum::Json(SubscriptionView::of(&s)))
}

/// Cancel a subscription now, or at the end of its current period (server key).
#[utoipa::path(post, path = "/v1/subscriptions/{id}/cancel", tag = "subscriptions", params(("id" = String, Path)),
    request_body = Option<CancelSubscription>, security(("bearer" = [])),
    responses((status = 200, body = SubscriptionView), (status = "4XX", body = ErrorBody)))]
async fn cancel_subscription(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<CancelSubscription>,
) -> ApiResult<axum::Json<SubscriptionView>> {
    let app = caller.app(Permission::SubscriptionsWrite)?;
    let s = service::cancel(&state, app.as_str(), &id, body.at_period_end).await?;
    Ok(axum::Json(SubscriptionView::of(&s)))
}
