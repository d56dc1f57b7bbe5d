//! `/v1/refunds`: admin keys by default; a server key only with `refunds:write`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use paybridge_core::keys::Permission;
use paybridge_store::refunds;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, ErrorBody};
use crate::http::extract::{Body, Caller, Path, Query};
use crate::http::list::{to_params, List};
use crate::service::refunds::{self as service, RefundInput};
use crate::service::views::RefundView;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_refund, list_refunds))
        .routes(routes!(get_refund))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRefund {
    pub payment: String,
    /// Minor units; default all that is left to refund.
    pub amount: Option<i64>,
    /// `duplicate`, `fraudulent` or `requested_by_customer`.
    pub reason: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// Connect: give the platform's application fee back too.
    #[serde(default)]
    pub refund_application_fee: bool,
    /// Connect: take the transferred amount back from the connected account.
    #[serde(default)]
    pub reverse_transfer: bool,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RefundQuery {
    pub payment: Option<String>,
    pub limit: Option<i64>,
    pub starting_after: Option<String>,
}

/// Refund a payment, fully or partly (admin; server keys with `refunds:write`). More
/// than what is left to refund is a 422 `amount_too_large`.
#[utoipa::path(post, path = "/v1/refunds", tag = "refunds", request_body = CreateRefund,
    security(("bearer" = [])),
    responses((status = 201, body = RefundView), (status = "4XX", body = ErrorBody)))]
async fn create_refund(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<CreateRefund>,
) -> ApiResult<(StatusCode, axum::Json<RefundView>)> {
    let app = caller.app(Permission::RefundsWrite)?;
    let r = service::create(
        &state,
        app.as_str(),
        RefundInput {
            payment: body.payment,
            amount: body.amount,
            reason: body.reason,
            metadata: body.metadata.unwrap_or_default(),
            refund_application_fee: body.refund_application_fee,
            reverse_transfer: body.reverse_transfer,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(RefundView::of(&r))))
}

#[utoipa::path(get, path = "/v1/refunds", tag = "refunds", params(RefundQuery),
    security(("bearer" = [])),
    responses((status = 200, body = List<RefundView>), (status = "4XX", body = ErrorBody)))]
async fn list_refunds(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<RefundQuery>,
) -> ApiResult<axum::Json<List<RefundView>>> {
    let app = caller.app(Permission::RefundsRead)?;
    let page = refunds::list(
        &state.db,
        app.as_str(),
        q.payment.as_deref(),
        &to_params(q.limit, q.starting_after)?,
    )
    .await?;
    Ok(axum::Json(List::from_page(page, |r| RefundView::of(&r))))
}

#[utoipa::path(get, path = "/v1/refunds/{id}", tag = "refunds", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = RefundView), (status = "4XX", body = ErrorBody)))]
async fn get_refund(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<RefundView>> {
    let app = caller.app(Permission::RefundsRead)?;
    Ok(axum::Json(RefundView::of(
        &service::get(&state, app.as_str(), &id).await?,
    )))
}
