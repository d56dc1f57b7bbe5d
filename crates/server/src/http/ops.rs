//! Health, readiness and metrics: for load balancers and Prometheus, no key needed.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ErrorBody, ErrorType};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// The database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
async fn readyz(State(state): State<AppState>) -> Result<axum::Json<Health>, ApiError> {
    match state.db.ping().await {
        Ok(()) => Ok(axum::Json(Health { status: "ready" })),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorType::ApiError,
                "database_unavailable",
                "The database does not answer",
            ))
        }
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Some(g) = state.db.group_commits() {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        state.metrics.db_group_commits.set(gauge(g.commits));
        state
            .metrics
            .db_group_transactions
            .set(gauge(g.transactions));
        state.metrics.record_writer_held(g.held.as_secs_f64());
        state
            .metrics
            .db_checkpoint_steps
            .set(gauge(g.checkpoint_steps));
        state
            .metrics
            .record_checkpoint_held(g.checkpoint_held.as_secs_f64());
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
