//! `GET /v1/events`: our own events, newest first.

use axum::extract::State;
use paybridge_core::keys::Permission;
use paybridge_store::events::{self, Filter};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, ErrorBody};
use crate::http::extract::{Caller, Query};
use crate::http::list::{known_event_type, to_params, List};
use crate::service::views::EventView;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only events of this type (`payment.succeeded`, …): one of paybridge's event
    /// types, or a 400.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    pub customer: Option<String>,
    pub order: Option<String>,
    pub payment: Option<String>,
    pub limit: Option<i64>,
    pub starting_after: Option<String>,
}

/// What happened, newest first (admin, server keys).
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventQuery),
    security(("bearer" = [])),
    responses((status = 200, body = List<EventView>), (status = "4XX", body = ErrorBody)))]
async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<EventQuery>,
) -> ApiResult<axum::Json<List<EventView>>> {
    let app = caller.app(Permission::EventsRead)?;
    let params = to_params(q.limit, q.starting_after)?;
    let filter = Filter {
        kind: known_event_type(q.kind.as_deref())?,
        customer: q.customer.as_deref(),
        order: q.order.as_deref(),
        payment: q.payment.as_deref(),
    };
    let (rows, has_more) = events::list(
        &state.db,
        app.as_str(),
        &filter,
        params.limit,
        params.starting_after.as_deref(),
    )
    .await?;
    Ok(axum::Json(List {
        object: "list",
        data: rows.iter().map(EventView::of).collect(),
        has_more,
    }))
}
