//! `/v1/connect/…` and `/v1/provider/webhook_endpoints`: Stripe Connect for platforms.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use paybridge_core::keys::Permission;
use paybridge_store::connect::{AccountRow, TransferRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, ErrorBody};
use crate::http::extract::{Body, Caller, Path, Query};
use crate::http::list::Deleted;
use crate::service::connect as service;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_account))
        .routes(routes!(get_account, delete_account))
        .routes(routes!(list_persons))
        .routes(routes!(create_transfer))
        .routes(routes!(payout_transactions))
        .routes(routes!(webhook_endpoints))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    pub email: String,
    /// Your own id for the seller.
    pub external_id: Option<String>,
    /// Two-letter country code (default the provider's).
    pub country: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AccountView {
    pub id: String,
    /// Always `connected_account`.
    pub object: &'static str,
    pub provider_account_id: String,
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub country: Option<String>,
    pub created: i64,
    /// The provider's account object (on a single account's read).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub provider: Option<serde_json::Value>,
}

impl AccountView {
    fn of(a: &AccountRow) -> AccountView {
        AccountView {
            id: a.id.clone(),
            object: "connected_account",
            provider_account_id: a.provider_account_id.clone(),
            email: a.email.clone(),
            external_id: a.external_id.clone(),
            country: a.country.clone(),
            created: a.created,
            provider: None,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTransfer {
    /// One of this app's connected accounts (`account_…`, or its provider id `acct_…`).
    pub destination: String,
    pub amount: i64,
    pub currency: String,
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, ToSchema)]
pub struct TransferView {
    pub id: String,
    /// Always `transfer`.
    pub object: &'static str,
    pub destination: String,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub provider_transfer_id: Option<String>,
    pub created: i64,
}

impl TransferView {
    fn of(t: &TransferRow) -> TransferView {
        TransferView {
            id: t.id.clone(),
            object: "transfer",
            destination: t.destination.clone(),
            amount: t.amount,
            currency: t.currency.clone(),
            status: t.status.clone(),
            provider_transfer_id: t.provider_transfer_id.clone(),
            created: t.created,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ProviderList {
    /// Always `list`.
    pub object: &'static str,
    /// The provider's objects, as it sent them.
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<serde_json::Value>,
    pub has_more: bool,
}

fn provider_list(data: Vec<serde_json::Value>) -> axum::Json<ProviderList> {
    axum::Json(ProviderList {
        object: "list",
        data,
        has_more: false,
    })
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PayoutQuery {
    /// The connected account whose payout it is (`account_…` or `acct_…`).
    pub account: Option<String>,
}

/// Create a connected account (express) for a seller (admin, or a server key granted
/// `connect:write`).
#[utoipa::path(post, path = "/v1/connect/accounts", tag = "connect", request_body = CreateAccount,
    security(("bearer" = [])),
    responses((status = 201, body = AccountView), (status = "4XX", body = ErrorBody)))]
async fn create_account(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<CreateAccount>,
) -> ApiResult<(StatusCode, axum::Json<AccountView>)> {
    let app = caller.app(Permission::ConnectWrite)?;
    let a = service::create_account(
        &state,
        app.as_str(),
        &body.email,
        body.external_id,
        body.country,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(AccountView::of(&a))))
}

#[utoipa::path(get, path = "/v1/connect/accounts/{id}", tag = "connect", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = AccountView), (status = "4XX", body = ErrorBody)))]
async fn get_account(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<AccountView>> {
    let app = caller.app(Permission::ConnectRead)?;
    let (row, provider) = service::account(&state, app.as_str(), &id).await?;
    let mut v = AccountView::of(&row);
    v.provider = Some(provider);
    Ok(axum::Json(v))
}

/// Delete a connected account (admin, or a server key granted `connect:write`).
#[utoipa::path(delete, path = "/v1/connect/accounts/{id}", tag = "connect", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Deleted), (status = "4XX", body = ErrorBody)))]
async fn delete_account(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Deleted>> {
    let app = caller.app(Permission::ConnectWrite)?;
    service::delete_account(&state, app.as_str(), &id).await?;
    Ok(axum::Json(Deleted {
        id,
        object: "connected_account".into(),
        deleted: true,
    }))
}

/// The account's persons, as the provider has them.
#[utoipa::path(get, path = "/v1/connect/accounts/{id}/persons", tag = "connect", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = ProviderList), (status = "4XX", body = ErrorBody)))]
async fn list_persons(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ProviderList>> {
    let app = caller.app(Permission::ConnectRead)?;
    Ok(provider_list(
        service::persons(&state, app.as_str(), &id).await?,
    ))
}

/// Move money from the platform's balance to one of this app's connected accounts
/// (admin, or a server key granted `transfers:write`).
#[utoipa::path(post, path = "/v1/connect/transfers", tag = "connect", request_body = CreateTransfer,
    security(("bearer" = [])),
    responses((status = 201, body = TransferView), (status = "4XX", body = ErrorBody)))]
async fn create_transfer(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<CreateTransfer>,
) -> ApiResult<(StatusCode, axum::Json<TransferView>)> {
    let app = caller.app(Permission::TransfersWrite)?;
    let t = service::transfer(
        &state,
        app.as_str(),
        &body.destination,
        body.amount,
        &body.currency,
        body.metadata.unwrap_or_default(),
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(TransferView::of(&t))))
}

/// The balance transactions a payout settled.
#[utoipa::path(get, path = "/v1/connect/payouts/{payout}/transactions", tag = "connect",
    params(("payout" = String, Path), PayoutQuery), security(("bearer" = [])),
    responses((status = 200, body = ProviderList), (status = "4XX", body = ErrorBody)))]
async fn payout_transactions(
    State(state): State<AppState>,
    caller: Caller,
    Path(payout): Path<String>,
    Query(q): Query<PayoutQuery>,
) -> ApiResult<axum::Json<ProviderList>> {
    let app = caller.app(Permission::ConnectRead)?;
    Ok(provider_list(
        service::payout_transactions(&state, app.as_str(), &payout, q.account.as_deref()).await?,
    ))
}

/// The webhook endpoints registered at the provider (admin).
#[utoipa::path(get, path = "/v1/provider/webhook_endpoints", tag = "connect",
    security(("bearer" = [])),
    responses((status = 200, body = ProviderList), (status = "4XX", body = ErrorBody)))]
async fn webhook_endpoints(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<ProviderList>> {
    let app = caller.app(Permission::ConfigWrite)?;
    Ok(provider_list(
        service::webhook_endpoints(&state, app.as_str()).await?,
    ))
}
