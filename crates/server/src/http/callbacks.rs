//! `/v1/callback_endpoints` and `/v1/deliveries`: where paybridge sends the app's
//! events, and every attempt it made (admin keys; reading also `callbacks:read`).

use axum::extract::State;
use axum::http::StatusCode;
use paybridge_core::keys::Permission;
use paybridge_store::callbacks::{self, AttemptRow, DeliveryFilter, DeliveryRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult, ErrorBody, OrNotFound};
use crate::http::extract::{Body, Caller, Path, Query};
use crate::http::list::{to_params, Deleted, List, ListQuery};
use crate::service::callbacks::{self as service, EndpointView};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(get_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(enable_endpoint))
        .routes(routes!(endpoint_deliveries))
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(retry_delivery))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// Where to POST the events (http or https). A `live` app's URL must be public: not a
    /// loopback, private, link-local or otherwise special address, by name or after DNS
    /// resolution (checked again at every delivery). A `test` app may use `localhost`.
    /// An app has at most 16 endpoints.
    pub url: String,
    /// Event types to send; `["*"]` (the default) for all.
    pub events: Option<Vec<String>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the old secret keeps signing beside the new one, in seconds (default
    /// 86400, at most 604800; 0 ends it now).
    pub overlap_seconds: Option<i64>,
}

/// One attempt at a delivery, as logged.
#[derive(Serialize, ToSchema)]
pub struct AttemptView {
    /// When it started (unix milliseconds).
    pub attempted_ms: i64,
    /// The endpoint's HTTP status; none if it could not be reached.
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    /// The start of the endpoint's answer.
    pub response_snippet: Option<String>,
    pub error: Option<String>,
    /// The paybridge process that made it.
    pub node: String,
}

/// One event on its way to one endpoint.
#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: String,
    /// Always `delivery`.
    pub object: &'static str,
    pub endpoint: String,
    /// The event (also its `webhook-id`).
    pub event: String,
    pub event_type: String,
    /// `pending`, `succeeded` or `failed` (schedule used up, or endpoint disabled).
    pub status: String,
    pub attempts: i64,
    /// When the next attempt is due (unix milliseconds), while pending.
    pub next_attempt_ms: Option<i64>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_ms: i64,
    /// Every attempt, oldest first (on a single delivery's read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<AttemptView>>,
}

impl DeliveryView {
    fn of(d: &DeliveryRow, attempts: Option<Vec<AttemptRow>>) -> DeliveryView {
        DeliveryView {
            id: d.id.clone(),
            object: "delivery",
            endpoint: d.endpoint_id.clone(),
            event: d.event_id.clone(),
            event_type: d.event_type.clone(),
            status: d.status.clone(),
            attempts: d.attempts,
            next_attempt_ms: (d.status == "pending").then_some(d.next_attempt_ms),
            last_status_code: d.last_status,
            last_error: d.last_error.clone(),
            created_ms: d.created_ms,
            attempt_log: attempts.map(|v| {
                v.into_iter()
                    .map(|a| AttemptView {
                        attempted_ms: a.attempted_ms,
                        status_code: a.status_code,
                        latency_ms: a.latency_ms,
                        response_snippet: a.response_snippet,
                        error: a.error,
                        node: a.node,
                    })
                    .collect()
            }),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    pub endpoint: Option<String>,
    pub event: Option<String>,
    /// `pending`, `succeeded` or `failed`.
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub starting_after: Option<String>,
}

/// Add a callback endpoint (admin). The answer carries its signing secret, this once.
#[utoipa::path(post, path = "/v1/callback_endpoints", tag = "callbacks", request_body = CreateEndpoint,
    security(("bearer" = [])),
    responses((status = 201, body = EndpointView), (status = "4XX", body = ErrorBody)))]
async fn create_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<CreateEndpoint>,
) -> ApiResult<(StatusCode, axum::Json<EndpointView>)> {
    let app = caller.app(Permission::CallbacksWrite)?;
    let events = body.events.unwrap_or_else(|| vec!["*".into()]);
    let environment = caller
        .0
        .environment
        .unwrap_or(paybridge_core::Environment::Live);
    let (row, secret) =
        service::create(&state, app.as_str(), environment, &body.url, &events).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(EndpointView::of(&row, Some(&secret))),
    ))
}

#[utoipa::path(get, path = "/v1/callback_endpoints", tag = "callbacks", params(ListQuery),
    security(("bearer" = [])),
    responses((status = 200, body = List<EndpointView>), (status = "4XX", body = ErrorBody)))]
async fn list_endpoints(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<List<EndpointView>>> {
    let app = caller.app(Permission::CallbacksRead)?;
    let page = callbacks::list_endpoints(&state.db, app.as_str(), &q.params()?).await?;
    Ok(axum::Json(List::from_page(page, |r| {
        EndpointView::of(&r, None)
    })))
}

#[utoipa::path(get, path = "/v1/callback_endpoints/{id}", tag = "callbacks", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = EndpointView), (status = "4XX", body = ErrorBody)))]
async fn get_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<EndpointView>> {
    let app = caller.app(Permission::CallbacksRead)?;
    let row = callbacks::endpoint(&state.db, app.as_str(), &id)
        .await
        .or_404("callback endpoint")?;
    Ok(axum::Json(EndpointView::of(&row, None)))
}

/// Remove an endpoint; its pending deliveries are not attempted.
#[utoipa::path(delete, path = "/v1/callback_endpoints/{id}", tag = "callbacks", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Deleted), (status = "4XX", body = ErrorBody)))]
async fn delete_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Deleted>> {
    let app = caller.app(Permission::CallbacksWrite)?;
    service::set_status(&state, app.as_str(), &id, "deleted").await?;
    Ok(axum::Json(Deleted {
        id,
        object: "callback_endpoint".into(),
        deleted: true,
    }))
}

/// A new signing secret (shown this once); the old one keeps signing beside it for
/// the overlap, so receivers can switch without missing a delivery.
#[utoipa::path(post, path = "/v1/callback_endpoints/{id}/rotate_secret", tag = "callbacks",
    params(("id" = String, Path)), request_body = Option<RotateSecret>,
    security(("bearer" = [])),
    responses((status = 200, body = EndpointView), (status = "4XX", body = ErrorBody)))]
async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<RotateSecret>,
) -> ApiResult<axum::Json<EndpointView>> {
    let app = caller.app(Permission::CallbacksWrite)?;
    let overlap = body.overlap_seconds.unwrap_or(86_400);
    if !(0..=7 * 86_400).contains(&overlap) {
        return Err(ApiError::bad_request(
            "parameter_invalid",
            "overlap_seconds must be from 0 to 604800",
        )
        .with_param("overlap_seconds"));
    }
    let (row, secret) = service::rotate(&state, app.as_str(), &id, overlap).await?;
    Ok(axum::Json(EndpointView::of(&row, Some(&secret))))
}

/// Enable a disabled endpoint again (its failures are forgotten; deliveries stopped by
/// the disabling can be retried one by one).
#[utoipa::path(post, path = "/v1/callback_endpoints/{id}/enable", tag = "callbacks",
    params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = EndpointView), (status = "4XX", body = ErrorBody)))]
async fn enable_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<EndpointView>> {
    let app = caller.app(Permission::CallbacksWrite)?;
    let row = service::set_status(&state, app.as_str(), &id, "enabled").await?;
    Ok(axum::Json(EndpointView::of(&row, None)))
}

#[utoipa::path(get, path = "/v1/callback_endpoints/{id}/deliveries", tag = "callbacks",
    params(("id" = String, Path), ListQuery),
    security(("bearer" = [])),
    responses((status = 200, body = List<DeliveryView>), (status = "4XX", body = ErrorBody)))]
async fn endpoint_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<List<DeliveryView>>> {
    let app = caller.app(Permission::CallbacksRead)?;
    callbacks::endpoint(&state.db, app.as_str(), &id)
        .await
        .or_404("callback endpoint")?;
    let filter = DeliveryFilter {
        endpoint: Some(&id),
        ..Default::default()
    };
    let page = callbacks::deliveries(&state.db, app.as_str(), &filter, &q.params()?).await?;
    Ok(axum::Json(List::from_page(page, |d| {
        DeliveryView::of(&d, None)
    })))
}

/// Deliveries, newest event first, by endpoint, event or status.
#[utoipa::path(get, path = "/v1/deliveries", tag = "callbacks", params(DeliveryQuery),
    security(("bearer" = [])),
    responses((status = 200, body = List<DeliveryView>), (status = "4XX", body = ErrorBody)))]
async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<DeliveryQuery>,
) -> ApiResult<axum::Json<List<DeliveryView>>> {
    let app = caller.app(Permission::CallbacksRead)?;
    let filter = DeliveryFilter {
        endpoint: q.endpoint.as_deref(),
        event: q.event.as_deref(),
        status: crate::http::list::known_status(
            q.status.as_deref(),
            &["pending", "succeeded", "failed"],
        )?,
    };
    let params = to_params(q.limit, q.starting_after)?;
    let page = callbacks::deliveries(&state.db, app.as_str(), &filter, &params).await?;
    Ok(axum::Json(List::from_page(page, |d| {
        DeliveryView::of(&d, None)
    })))
}

/// A delivery with every attempt made.
#[utoipa::path(get, path = "/v1/deliveries/{id}", tag = "callbacks", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = DeliveryView), (status = "4XX", body = ErrorBody)))]
async fn get_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<DeliveryView>> {
    let app = caller.app(Permission::CallbacksRead)?;
    let d = callbacks::delivery(&state.db, app.as_str(), &id)
        .await
        .or_404("delivery")?;
    let attempts = callbacks::attempts(&state.db, app.as_str(), &id).await?;
    Ok(axum::Json(DeliveryView::of(&d, Some(attempts))))
}

/// Deliver again now (also one that succeeded or gave up); the event keeps its
/// `webhook-id`, so a receiver that has it can tell.
#[utoipa::path(post, path = "/v1/deliveries/{id}/retry", tag = "callbacks", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 202, body = DeliveryView), (status = "4XX", body = ErrorBody)))]
async fn retry_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, axum::Json<DeliveryView>)> {
    let app = caller.app(Permission::CallbacksWrite)?;
    let d = service::redeliver(&state, app.as_str(), &id).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(DeliveryView::of(&d, None))))
}
