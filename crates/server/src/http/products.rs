//! `/v1/products`: the catalog. Admin keys write it; every key reads it, publishable
//! keys only its active products.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use paybridge_core::catalog::{self, Interval, Recurring};
use paybridge_core::ids::ProductId;
use paybridge_core::keys::{Permission, Role};
use paybridge_core::{Currency, Invalid};
use paybridge_store::products::{self, ProductRow};
use paybridge_store::{now, StoreError};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult, ErrorBody, OrNotFound};
use crate::http::extract::{Body, Caller, Path, Query};
use crate::http::list::{to_params, Deleted, List};
use crate::service::catalog::ImportReport;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_product, list_products))
        .routes(routes!(get_product, update_product, delete_product))
        .routes(routes!(import_products))
}

/// Import the provider's active prices as products (admin). Products already standing
/// for a price are updated.
#[utoipa::path(post, path = "/v1/products/import", tag = "products",
    security(("bearer" = [])),
    responses((status = 200, body = ImportReport), (status = "4XX", body = ErrorBody)))]
async fn import_products(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<ImportReport>> {
    let app = caller.app(Permission::ProductsWrite)?;
    let report = crate::service::catalog::import(&state, app.as_str(), |_, _| {}).await?;
    Ok(axum::Json(report))
}

#[derive(Deserialize, Serialize, ToSchema, Clone)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct RecurringInput {
    /// `day`, `week`, `month` or `year`.
    pub interval: String,
    /// Intervals between charges (default 1; at most one year in all).
    pub interval_count: Option<i64>,
}

crate::http::extract::object_only!(RecurringInput);

// `remote = "Self"` made the derived writer an inherent function too.
impl Serialize for RecurringInput {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RecurringInput::serialize(self, s)
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    pub name: String,
    pub description: Option<String>,
    /// Price in the currency's minor units, 0 to 99,999,999.
    pub unit_amount: i64,
    /// Lowercase ISO 4217 code of a currency Stripe supports.
    pub currency: String,
    /// A Stripe price this product stands for (`price_…`).
    pub provider_price_id: Option<String>,
    pub provider_product_id: Option<String>,
    /// Present for subscription products.
    pub recurring: Option<RecurringInput>,
    /// Default true.
    pub active: Option<bool>,
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Fields to change; absent fields stay, `null` clears an optional field. Changing
/// the price (amount, currency, recurring) drops the link to a Stripe price unless a
/// new `provider_price_id` comes with it: Stripe prices cannot change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProduct {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub description: Option<Option<String>>,
    pub unit_amount: Option<i64>,
    pub currency: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub provider_price_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub provider_product_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<RecurringInput>, nullable)]
    pub recurring: Option<Option<RecurringInput>>,
    pub active: Option<bool>,
    /// Merged into the existing metadata; a key set to "" is removed.
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Tells "absent" (`None`) from "null" (`Some(None)`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Serialize, ToSchema)]
pub struct ProductView {
    pub id: String,
    /// Always `product`.
    pub object: &'static str,
    pub name: String,
    pub description: Option<String>,
    pub unit_amount: i64,
    pub currency: String,
    pub recurring: Option<RecurringInput>,
    pub active: bool,
    pub provider_product_id: Option<String>,
    pub provider_price_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub created: i64,
    pub updated: i64,
}

impl From<ProductRow> for ProductView {
    fn from(p: ProductRow) -> Self {
        ProductView {
            recurring: p.recurring_interval.map(|interval| RecurringInput {
                interval,
                interval_count: p.recurring_interval_count,
            }),
            metadata: serde_json::from_str(&p.metadata).unwrap_or_default(),
            id: p.id,
            object: "product",
            name: p.name,
            description: p.description,
            unit_amount: p.unit_amount,
            currency: p.currency,
            active: p.active == 1,
            provider_product_id: p.provider_product_id,
            provider_price_id: p.provider_price_id,
            created: p.created,
            updated: p.updated,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProductQuery {
    pub limit: Option<i64>,
    pub starting_after: Option<String>,
    /// Only active (true) or inactive (false) products. Publishable keys see active ones only.
    pub active: Option<bool>,
}

fn parse_recurring(r: &RecurringInput) -> Result<Recurring, Invalid> {
    let interval = Interval::parse(&r.interval).ok_or_else(|| {
        Invalid::new(
            "recurring.interval",
            "invalid_interval",
            "interval must be day, week, month or year",
        )
    })?;
    Recurring::new(interval, r.interval_count)
}

fn provider_id(param: &str, id: Option<String>) -> Result<Option<String>, Invalid> {
    match id {
        Some(s) if s.is_empty() || s.len() > 255 || s.chars().any(char::is_whitespace) => {
            Err(Invalid::new(
                param,
                "invalid_id",
                format!("{param} must be a provider id without spaces"),
            ))
        }
        other => Ok(other),
    }
}

fn metadata_json(m: &BTreeMap<String, String>) -> String {
    serde_json::to_string(m).unwrap_or_else(|_| "{}".into())
}

/// Create a product (admin).
#[utoipa::path(post, path = "/v1/products", tag = "products", request_body = CreateProduct,
    security(("bearer" = [])),
    responses((status = 201, body = ProductView), (status = "4XX", body = ErrorBody)))]
async fn create_product(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<CreateProduct>,
) -> ApiResult<(StatusCode, axum::Json<ProductView>)> {
    let app = caller.app(Permission::ProductsWrite)?;
    let name = catalog::validate_name(&body.name)?;
    if let Some(d) = &body.description {
        catalog::validate_description(d)?;
    }
    let currency = Currency::parse(&body.currency)?;
    catalog::validate_unit_amount(body.unit_amount, currency)?;
    let recurring = body.recurring.as_ref().map(parse_recurring).transpose()?;
    let metadata = body.metadata.unwrap_or_default();
    catalog::validate_metadata(&metadata)?;
    let ts = now();
    let row = ProductRow {
        id: ProductId::generate().into_string(),
        app_id: app.to_string(),
        name,
        description: body.description,
        unit_amount: body.unit_amount,
        currency: currency.code().to_owned(),
        recurring_interval: recurring.map(|r| r.interval.as_str().to_owned()),
        recurring_interval_count: recurring.map(|r| i64::from(r.interval_count)),
        provider_product_id: provider_id("provider_product_id", body.provider_product_id)?,
        provider_price_id: provider_id("provider_price_id", body.provider_price_id)?,
        active: i64::from(body.active.unwrap_or(true)),
        metadata: metadata_json(&metadata),
        created: ts,
        updated: ts,
    };
    products::insert(&state.db, &row)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::conflict(
                "resource_already_exists",
                "another product already stands for this provider_price_id",
            )
            .with_param("provider_price_id"),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, axum::Json(row.into())))
}

/// List products, newest first (any key; publishable keys see active products only).
#[utoipa::path(get, path = "/v1/products", tag = "products", params(ProductQuery),
    security(("bearer" = [])),
    responses((status = 200, body = List<ProductView>), (status = "4XX", body = ErrorBody)))]
async fn list_products(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ProductQuery>,
) -> ApiResult<axum::Json<List<ProductView>>> {
    let app = caller.app(Permission::ProductsRead)?;
    let params = to_params(q.limit, q.starting_after)?;
    let active = if caller.0.role == Role::Publishable {
        Some(true)
    } else {
        q.active
    };
    let page = products::list(&state.db, app.as_str(), active, &params).await?;
    Ok(axum::Json(List::from_page(page, ProductView::from)))
}

/// Read a product (any key; publishable keys only active ones).
#[utoipa::path(get, path = "/v1/products/{id}", tag = "products", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = ProductView), (status = "4XX", body = ErrorBody)))]
async fn get_product(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ProductView>> {
    let app = caller.app(Permission::ProductsRead)?;
    let row = products::get(&state.db, app.as_str(), &id)
        .await
        .or_404("product")?;
    if caller.0.role == Role::Publishable && row.active != 1 {
        return Err(ApiError::not_found("product"));
    }
    Ok(axum::Json(row.into()))
}

/// Change a product (admin).
#[utoipa::path(patch, path = "/v1/products/{id}", tag = "products", params(("id" = String, Path)),
    request_body = Option<UpdateProduct>, security(("bearer" = [])),
    responses((status = 200, body = ProductView), (status = "4XX", body = ErrorBody)))]
async fn update_product(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<UpdateProduct>,
) -> ApiResult<axum::Json<ProductView>> {
    let app = caller.app(Permission::ProductsWrite)?;
    let row = products::update(&state.db, app.as_str(), &id, |p| apply_update(p, body))
        .await
        .map_err(|e| match e.code.as_str() {
            "resource_missing" => ApiError::not_found("product"),
            _ => e,
        })?;
    Ok(axum::Json(row.into()))
}

fn apply_update(p: &mut ProductRow, u: UpdateProduct) -> ApiResult<()> {
    if let Some(name) = &u.name {
        p.name = catalog::validate_name(name)?;
    }
    if let Some(d) = u.description {
        if let Some(d) = &d {
            catalog::validate_description(d)?;
        }
        p.description = d;
    }
    let price_changed = u.unit_amount.is_some() || u.currency.is_some() || u.recurring.is_some();
    let currency = Currency::parse(u.currency.as_deref().unwrap_or(&p.currency))?;
    let amount = u.unit_amount.unwrap_or(p.unit_amount);
    catalog::validate_unit_amount(amount, currency)?;
    p.unit_amount = amount;
    p.currency = currency.code().to_owned();
    if let Some(r) = u.recurring {
        let r = r.as_ref().map(parse_recurring).transpose()?;
        p.recurring_interval = r.map(|r| r.interval.as_str().to_owned());
        p.recurring_interval_count = r.map(|r| i64::from(r.interval_count));
    }
    match u.provider_price_id {
        Some(id) => p.provider_price_id = provider_id("provider_price_id", id)?,
        None if price_changed => p.provider_price_id = None,
        None => {}
    }
    if let Some(id) = u.provider_product_id {
        p.provider_product_id = provider_id("provider_product_id", id)?;
    }
    if let Some(a) = u.active {
        p.active = i64::from(a);
    }
    if let Some(changes) = u.metadata {
        let mut m: BTreeMap<String, String> = serde_json::from_str(&p.metadata).unwrap_or_default();
        for (k, v) in changes {
            if v.is_empty() {
                m.remove(&k);
            } else {
                m.insert(k, v);
            }
        }
        catalog::validate_metadata(&m)?;
        p.metadata = metadata_json(&m);
    }
    Ok(())
}

/// Delete (archive) a product (admin). Orders keep their own copy of what they sold.
#[utoipa::path(delete, path = "/v1/products/{id}", tag = "products", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Deleted), (status = "4XX", body = ErrorBody)))]
async fn delete_product(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Deleted>> {
    let app = caller.app(Permission::ProductsWrite)?;
    products::delete(&state.db, app.as_str(), &id)
        .await
        .or_404("product")?;
    Ok(axum::Json(Deleted {
        id,
        object: "product".into(),
        deleted: true,
    }))
}
