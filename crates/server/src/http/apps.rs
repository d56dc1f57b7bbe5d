//! `/v1/apps` and `/v1/keys`: the operator's side. The root key creates apps; an
//! app's admin key may read its own app and manage its own keys.

use axum::extract::State;
use axum::http::StatusCode;
use paybridge_core::keys::{Permission, Role};
use paybridge_core::{Environment, Invalid};
use paybridge_store::apps::AppRow;
use paybridge_store::keys::KeyRow;
use paybridge_store::{apps, keys};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult, ErrorBody, OrNotFound};
use crate::http::extract::{Body, Caller, Path, Query};
use crate::http::list::{List, ListQuery};
use crate::service;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_app, list_apps))
        .routes(routes!(get_app))
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
        .routes(routes!(whoami))
}

/// The key making the request, as paybridge sees it.
#[derive(Serialize, ToSchema)]
pub struct CallerView {
    /// Always `caller`.
    pub object: &'static str,
    /// `root`, `admin`, `server` or `publishable`.
    pub role: &'static str,
    /// The app the key acts in (none for the root key).
    pub app: Option<String>,
    /// `test` or `live`.
    pub environment: Option<&'static str>,
    pub permissions: Vec<&'static str>,
}

/// Who am I: the calling key's role, app, environment and permissions (any key).
#[utoipa::path(get, path = "/v1/me", tag = "apps",
    security(("bearer" = [])),
    responses((status = 200, body = CallerView), (status = "4XX", body = ErrorBody)))]
async fn whoami(caller: Caller) -> axum::Json<CallerView> {
    let p = &caller.0;
    axum::Json(CallerView {
        object: "caller",
        role: p.role.as_str(),
        app: p.app_id.as_ref().map(|a| a.to_string()),
        environment: p.environment.map(|e| e.as_str()),
        permissions: p.permissions(),
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    pub name: String,
    /// `test` (default) or `live`; fixed for the app's life.
    #[schema(example = "test")]
    pub environment: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AppView {
    pub id: String,
    /// Always `app`.
    pub object: &'static str,
    pub name: String,
    pub environment: String,
    /// The app made at first start, on the sandbox.
    pub demo: bool,
    pub created: i64,
}

impl From<AppRow> for AppView {
    fn from(a: AppRow) -> Self {
        AppView {
            id: a.id,
            object: "app",
            name: a.name,
            environment: a.environment,
            demo: a.demo == 1,
            created: a.created,
        }
    }
}

/// The keys of a new app, shown this once.
#[derive(Serialize, ToSchema)]
pub struct AppKeys {
    pub admin: String,
    pub server: String,
    pub publishable: String,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedAppView {
    #[serde(flatten)]
    pub app: AppView,
    pub keys: AppKeys,
}

#[derive(Serialize, ToSchema)]
pub struct KeyView {
    pub id: String,
    /// Always `api_key`.
    pub object: &'static str,
    pub app: Option<String>,
    pub role: String,
    /// Permissions granted beyond the role's own.
    pub permissions: Vec<String>,
    /// Enough of the key to recognise it.
    pub redacted: String,
    pub created: i64,
    pub revoked: Option<i64>,
    /// The key itself: present only in the response that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl From<KeyRow> for KeyView {
    fn from(k: KeyRow) -> Self {
        KeyView {
            id: k.id,
            object: "api_key",
            app: k.app_id,
            role: k.role,
            permissions: k
                .permissions
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            redacted: k.redacted,
            created: k.created,
            revoked: k.revoked,
            secret: None,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// `admin`, `server` or `publishable`.
    pub role: String,
    /// Extra permissions for a server key, e.g. `["refunds:write"]`.
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// The app a caller may act on by id: root any, an admin only its own. Any other app
/// is "not found", exactly as if it did not exist.
fn own_app<'a>(caller: &Caller, id: &'a str, p: Permission) -> ApiResult<&'a str> {
    caller.require(p)?;
    if caller.is_root() || caller.0.app_id.as_ref().map(|a| a.as_str()) == Some(id) {
        Ok(id)
    } else {
        Err(ApiError::not_found("app"))
    }
}

/// Create an app with one key of each role (root key).
#[utoipa::path(post, path = "/v1/apps", tag = "apps", request_body = CreateApp,
    security(("bearer" = [])),
    responses((status = 201, body = CreatedAppView), (status = "4XX", body = ErrorBody)))]
async fn create_app(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<CreateApp>,
) -> ApiResult<(StatusCode, axum::Json<CreatedAppView>)> {
    caller.require(Permission::AppsWrite)?;
    let env = match body.environment.as_deref() {
        None => Environment::Test,
        Some(e) => Environment::parse(e).ok_or_else(|| {
            Invalid::new(
                "environment",
                "invalid_environment",
                "environment must be `test` or `live`",
            )
        })?,
    };
    let created = service::apps::create_app(&state.db, &body.name, env, false).await?;
    let keys = AppKeys {
        admin: created.admin.expose().to_owned(),
        server: created.server.expose().to_owned(),
        publishable: created.publishable.expose().to_owned(),
    };
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedAppView {
            app: created.app.into(),
            keys,
        }),
    ))
}

/// List apps (root key).
#[utoipa::path(get, path = "/v1/apps", tag = "apps", params(ListQuery),
    security(("bearer" = [])),
    responses((status = 200, body = List<AppView>), (status = "4XX", body = ErrorBody)))]
async fn list_apps(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<List<AppView>>> {
    caller.require(Permission::AppsWrite)?;
    let page = apps::list_apps(&state.db, &q.params()?).await?;
    Ok(axum::Json(List::from_page(page, AppView::from)))
}

/// Read an app (root key, or the app's own admin key).
#[utoipa::path(get, path = "/v1/apps/{id}", tag = "apps",
    params(("id" = String, Path, description = "app id")),
    security(("bearer" = [])),
    responses((status = 200, body = AppView), (status = "4XX", body = ErrorBody)))]
async fn get_app(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<AppView>> {
    let id = own_app(&caller, &id, Permission::AppsRead)?;
    let app = apps::get_app(&state.db, id).await.or_404("app")?;
    Ok(axum::Json(app.into()))
}

/// Mint a key for an app (root key, or the app's admin key).
#[utoipa::path(post, path = "/v1/apps/{id}/keys", tag = "apps", request_body = CreateKey,
    params(("id" = String, Path, description = "app id")),
    security(("bearer" = [])),
    responses((status = 201, body = KeyView), (status = "4XX", body = ErrorBody)))]
async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<CreateKey>,
) -> ApiResult<(StatusCode, axum::Json<KeyView>)> {
    let id = own_app(&caller, &id, Permission::KeysWrite)?;
    let role = Role::parse(&body.role)
        .filter(|r| *r != Role::Root)
        .ok_or_else(|| {
            Invalid::new(
                "role",
                "invalid_role",
                "role must be admin, server or publishable",
            )
        })?;
    // A key mints no key that could do more than itself.
    if !caller.is_root() && !role.default_permissions().iter().all(|p| caller.0.can(*p)) {
        return Err(ApiError::forbidden(format!(
            "A {} key cannot mint a {} key",
            caller.0.role.as_str(),
            role.as_str()
        )));
    }
    let minted = service::apps::mint_key(&state.db, id, role, &body.permissions).await?;
    let secret = minted.expose().to_owned();
    let mut view = KeyView::from(minted.row);
    view.secret = Some(secret);
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// List an app's keys (never their secrets).
#[utoipa::path(get, path = "/v1/apps/{id}/keys", tag = "apps", params(("id" = String, Path), ListQuery),
    security(("bearer" = [])),
    responses((status = 200, body = List<KeyView>), (status = "4XX", body = ErrorBody)))]
async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<List<KeyView>>> {
    let id = own_app(&caller, &id, Permission::KeysWrite)?;
    let page = keys::list_keys(&state.db, id, &q.params()?).await?;
    Ok(axum::Json(List::from_page(page, KeyView::from)))
}

/// Revoke a key; it stops working at once.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "apps",
    params(("id" = String, Path, description = "key id")),
    security(("bearer" = [])),
    responses((status = 200, body = KeyView), (status = "4XX", body = ErrorBody)))]
async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<KeyView>> {
    caller.require(Permission::KeysWrite)?;
    let scope = if caller.is_root() {
        None
    } else {
        caller.0.app_id.as_ref().map(|a| a.as_str())
    };
    let row = keys::revoke(&state.db, scope, &id).await.or_404("key")?;
    Ok(axum::Json(row.into()))
}
