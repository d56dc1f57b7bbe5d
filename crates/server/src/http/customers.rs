//! `/v1/customers`: the app's users, mirrored to the provider, and their saved cards.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use paybridge_core::keys::Permission;
use paybridge_store::customers;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, ErrorBody, OrNotFound};
use crate::http::extract::{Body, Caller, Path, Query};
use crate::http::list::{email_param, to_params, Deleted, List};
use crate::service::customers::{self as service, CustomerInput};
use crate::service::views::{CardView, CustomerView};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upsert_customer, list_customers))
        .routes(routes!(get_customer))
        .routes(routes!(list_cards, attach_card))
        .routes(routes!(detach_card))
        .routes(routes!(set_default_card))
        .routes(routes!(create_session))
        .routes(routes!(create_portal_session))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePortalSession {
    /// Where the portal's "return" link takes the customer (absolute http(s) URL).
    pub return_url: String,
}

/// Open a customer portal session (server key): the URL of the provider's customer
/// portal (Stripe's Billing portal; the sandbox's own page), where this customer sees
/// their subscriptions and payments, cancels a subscription or changes the default card.
/// Changes reach paybridge as the provider's events.
#[utoipa::path(post, path = "/v1/customers/{id}/portal_sessions", tag = "customers", params(("id" = String, Path)),
    request_body = CreatePortalSession, security(("bearer" = [])),
    responses((status = 201, body = crate::service::portal::PortalSessionView), (status = "4XX", body = ErrorBody), (status = 502, body = ErrorBody)))]
async fn create_portal_session(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<CreatePortalSession>,
) -> ApiResult<(
    StatusCode,
    axum::Json<crate::service::portal::PortalSessionView>,
)> {
    let app = caller.app(Permission::CustomersWrite)?;
    let view = crate::service::portal::create(&state, app.as_str(), &id, &body.return_url).await?;
    Ok((StatusCode::CREATED, axum::Json(view)))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomerSession {
    /// Seconds the session lives: 60 to 3600 (default 1800).
    pub expires_in: Option<i64>,
}

/// A customer session, as minted: its secret is shown this once.
#[derive(serde::Serialize, ToSchema)]
pub struct CustomerSessionView {
    pub id: String,
    /// Always `customer_session`.
    pub object: &'static str,
    pub customer: String,
    /// Hand this to the browser: it passes it as `customer_session_secret` when it starts
    /// a checkout for this customer with the publishable key.
    pub client_secret: String,
    /// Unix seconds after which the secret no longer works.
    pub expires_at: i64,
    pub created: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertCustomer {
    /// Your own id for this user; a second call with it updates the same customer.
    pub external_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CustomerQuery {
    pub external_id: Option<String>,
    /// The whole email, in any case (`Ada@Example.com` finds `ada@example.com`).
    pub email: Option<String>,
    /// The beginning of the email, in any case (`ada` finds `ada@example.com` and
    /// `adam@example.org`).
    pub email_prefix: Option<String>,
    pub limit: Option<i64>,
    pub starting_after: Option<String>,
    /// Created at or after this time (unix seconds).
    #[serde(rename = "created[gte]")]
    pub created_gte: Option<i64>,
    /// Created at or before this time (unix seconds).
    #[serde(rename = "created[lte]")]
    pub created_lte: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachCard {
    /// A provider payment method (`pm_…`), or a Stripe test token such as `pm_card_visa`.
    pub payment_method: String,
    /// Make it the customer's default (the first card always is).
    #[serde(default)]
    pub default: bool,
}

/// Create a customer, or update the one with this `external_id` (server key).
#[utoipa::path(post, path = "/v1/customers", tag = "customers", request_body = UpsertCustomer,
    security(("bearer" = [])),
    responses((status = 201, body = CustomerView), (status = 200, body = CustomerView), (status = "4XX", body = ErrorBody)))]
async fn upsert_customer(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<UpsertCustomer>,
) -> ApiResult<(StatusCode, axum::Json<CustomerView>)> {
    let app = caller.app(Permission::CustomersWrite)?;
    let (row, created) = service::upsert(
        &state,
        app.as_str(),
        CustomerInput {
            external_id: body.external_id,
            email: body.email,
            name: body.name,
            metadata: body.metadata.unwrap_or_default(),
        },
    )
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(CustomerView::of(&row))))
}

/// List customers, newest first; or find them by `external_id`, by email (whole or its
/// beginning, any case) or by when they were created.
#[utoipa::path(get, path = "/v1/customers", tag = "customers", params(CustomerQuery),
    security(("bearer" = [])),
    responses((status = 200, body = List<CustomerView>), (status = "4XX", body = ErrorBody)))]
async fn list_customers(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<CustomerQuery>,
) -> ApiResult<axum::Json<List<CustomerView>>> {
    let app = caller.app(Permission::CustomersRead)?;
    let filter = customers::Filter {
        external_id: q.external_id.as_deref(),
        email: email_param("email", q.email.as_deref())?,
        email_prefix: email_param("email_prefix", q.email_prefix.as_deref())?,
        created: crate::http::list::created(q.created_gte, q.created_lte)?,
    };
    let page = customers::list(
        &state.db,
        app.as_str(),
        &filter,
        &to_params(q.limit, q.starting_after.clone())?,
    )
    .await?;
    Ok(axum::Json(List::from_page(page, |c| CustomerView::of(&c))))
}

#[utoipa::path(get, path = "/v1/customers/{id}", tag = "customers", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = CustomerView), (status = "4XX", body = ErrorBody)))]
async fn get_customer(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<CustomerView>> {
    let app = caller.app(Permission::CustomersRead)?;
    let row = customers::get(state.db.reader(), app.as_str(), &id)
        .await
        .or_404("customer")?;
    Ok(axum::Json(CustomerView::of(&row)))
}

/// The customer's saved cards.
#[utoipa::path(get, path = "/v1/customers/{id}/payment_methods", tag = "customers", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = List<CardView>), (status = "4XX", body = ErrorBody)))]
async fn list_cards(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<List<CardView>>> {
    let app = caller.app(Permission::CustomersRead)?;
    let c = customers::get(state.db.reader(), app.as_str(), &id)
        .await
        .or_404("customer")?;
    let cards = customers::cards(&state.db, app.as_str(), &id).await?;
    Ok(axum::Json(List {
        object: "list",
        data: cards
            .iter()
            .map(|card| CardView::of(card, c.default_payment_method.as_deref()))
            .collect(),
        has_more: false,
    }))
}

/// Save a card for the customer.
#[utoipa::path(post, path = "/v1/customers/{id}/payment_methods", tag = "customers", params(("id" = String, Path)),
    request_body = AttachCard, security(("bearer" = [])),
    responses((status = 201, body = CardView), (status = "4XX", body = ErrorBody)))]
async fn attach_card(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<AttachCard>,
) -> ApiResult<(StatusCode, axum::Json<CardView>)> {
    let app = caller.app(Permission::CustomersWrite)?;
    let (card, default) = service::attach_card(
        &state,
        app.as_str(),
        &id,
        &body.payment_method,
        body.default,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CardView::of(&card, default.as_deref())),
    ))
}

/// Remove a saved card.
#[utoipa::path(delete, path = "/v1/customers/{id}/payment_methods/{pm}", tag = "customers",
    params(("id" = String, Path), ("pm" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Deleted), (status = "4XX", body = ErrorBody)))]
async fn detach_card(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, pm)): Path<(String, String)>,
) -> ApiResult<axum::Json<Deleted>> {
    let app = caller.app(Permission::CustomersWrite)?;
    service::detach_card(&state, app.as_str(), &id, &pm).await?;
    Ok(axum::Json(Deleted {
        id: pm,
        object: "payment_method".into(),
        deleted: true,
    }))
}

/// Mint a customer session (server key): a short-lived secret that lets a browser with
/// the publishable key start a checkout as this customer (and save a card onto them).
/// Without one, a publishable key checks out only new or anonymous customers.
#[utoipa::path(post, path = "/v1/customers/{id}/sessions", tag = "customers", params(("id" = String, Path)),
    request_body = Option<CreateCustomerSession>, security(("bearer" = [])),
    responses((status = 201, body = CustomerSessionView), (status = "4XX", body = ErrorBody)))]
async fn create_session(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<CreateCustomerSession>,
) -> ApiResult<(StatusCode, axum::Json<CustomerSessionView>)> {
    let app = caller.app(Permission::CustomersWrite)?;
    let (row, secret) =
        crate::service::customer_sessions::mint(&state, app.as_str(), &id, body.expires_in).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CustomerSessionView {
            id: row.id,
            object: "customer_session",
            customer: row.customer_id,
            client_secret: secret,
            expires_at: row.expires_at,
            created: row.created,
        }),
    ))
}

/// Make a saved card the customer's default.
#[utoipa::path(post, path = "/v1/customers/{id}/payment_methods/{pm}/default", tag = "customers",
    params(("id" = String, Path), ("pm" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = CustomerView), (status = "4XX", body = ErrorBody)))]
async fn set_default_card(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, pm)): Path<(String, String)>,
) -> ApiResult<axum::Json<CustomerView>> {
    let app = caller.app(Permission::CustomersWrite)?;
    service::set_default(&state, app.as_str(), &id, &pm).await?;
    let row = customers::get(state.db.reader(), app.as_str(), &id)
        .await
        .or_404("customer")?;
    Ok(axum::Json(CustomerView::of(&row)))
}
