//! The demo shop's own back end. A real shop's storefront has a server of its own that
//! knows who is signed in; the demo storefront at `/` is served by paybridge, so
//! paybridge plays that server here, for the demo app only, while the storefront is on.
//! It does what the README tells an app's server to do: it mints a customer session
//! (so the browser may check out as its customer with the publishable key) and opens
//! the customer portal (`POST /v1/customers/{id}/portal_sessions`, a server key's
//! right). A publishable key never opens a portal: these two routes are the shop's,
//! not the API's.
//!
//! The demo has one shopper, "signed in" for whoever opens `/`: everyone who can reach
//! the storefront shares it, as they share the demo app's sandbox (no real money, no
//! real cards). `--no-demo` turns both routes off (404). They cost nothing per call:
//! the shopper, its customer session and its portal session are made once and reused
//! while they live, so an anonymous client cannot make rows by calling them.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use paybridge_store::{customers, now, ListParams};
use serde::Serialize;
use tokio::sync::Mutex;

use crate::bootstrap;
use crate::error::{ApiError, ApiResult};
use crate::service::{customer_sessions, customers as customer_service, portal};
use crate::state::AppState;

/// The demo shopper's `external_id`.
pub const SHOPPER: &str = "demo_shopper";
const SHOPPER_EMAIL: &str = "shopper@example.com";
const SHOPPER_NAME: &str = "Demo Shopper";
/// A session or portal link is handed out again until this long before it ends.
const MARGIN: i64 = 10 * 60;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/store/session", post(session))
        .route("/store/portal", post(portal_link))
}

/// What the demo shop's server remembers: the shopper, its live customer session and
/// its live portal link (in memory; a restart makes new ones).
#[derive(Default)]
pub struct Memo(Mutex<Remembered>);

#[derive(Default)]
struct Remembered {
    shopper: Option<(String, String)>,
    session: Option<(String, i64)>,
    portal: Option<(String, i64)>,
}

#[derive(Serialize)]
struct ShopperSession {
    customer: String,
    email: &'static str,
    customer_session_secret: String,
    expires_at: i64,
}

#[derive(Serialize)]
struct PortalLink {
    url: String,
}

/// The demo app, or 404 when there is no demo shop.
async fn demo_app(state: &AppState) -> ApiResult<String> {
    let none = || ApiError::not_found("demo shop");
    if !state.settings.storefront {
        return Err(none());
    }
    bootstrap::demo_app(&state.db)
        .await
        .map_err(|_| none())?
        .ok_or_else(none)
}

/// The shopper's customer in the demo app, made on first use.
async fn shopper(state: &AppState, app: &str, memo: &mut Remembered) -> ApiResult<String> {
    if let Some((a, id)) = &memo.shopper {
        if a == app {
            return Ok(id.clone());
        }
    }
    let filter = customers::Filter {
        external_id: Some(SHOPPER),
        ..Default::default()
    };
    let one = ListParams {
        limit: 1,
        starting_after: None,
    };
    let found = customers::list(&state.db, app, &filter, &one).await?;
    let id = match found.data.into_iter().next() {
        Some(c) => c.id,
        None => {
            let input = customer_service::CustomerInput {
                external_id: SHOPPER.to_owned(),
                email: Some(SHOPPER_EMAIL.to_owned()),
                name: Some(SHOPPER_NAME.to_owned()),
                metadata: Default::default(),
            };
            customer_service::upsert(state, app, input).await?.0.id
        }
    };
    memo.shopper = Some((app.to_owned(), id.clone()));
    Ok(id)
}

/// `POST /store/session`: the shopper and a customer session secret to check out as
/// them.
async fn session(State(state): State<AppState>) -> ApiResult<Json<ShopperSession>> {
    let app = demo_app(&state).await?;
    let mut memo = state.demo_shop.0.lock().await;
    let customer = shopper(&state, &app, &mut memo).await?;
    let live = memo
        .session
        .clone()
        .filter(|(_, end)| *end - MARGIN > now());
    let (secret, expires_at) = match live {
        Some(s) => s,
        None => {
            let (row, secret) = customer_sessions::mint(&state, &app, &customer, None).await?;
            memo.session = Some((secret.clone(), row.expires_at));
            (secret, row.expires_at)
        }
    };
    Ok(Json(ShopperSession {
        customer,
        email: SHOPPER_EMAIL,
        customer_session_secret: secret,
        expires_at,
    }))
}

/// `POST /store/portal`: the provider's customer portal for the shopper, coming back
/// to the storefront.
async fn portal_link(State(state): State<AppState>) -> ApiResult<Json<PortalLink>> {
    let app = demo_app(&state).await?;
    let mut memo = state.demo_shop.0.lock().await;
    let customer = shopper(&state, &app, &mut memo).await?;
    if let Some((url, end)) = memo.portal.clone() {
        if end - MARGIN > now() {
            return Ok(Json(PortalLink { url }));
        }
    }
    let back = format!("{}/", state.settings.public_url);
    let s = portal::create(&state, &app, &customer, &back).await?;
    memo.portal = Some((
        s.url.clone(),
        now() + paybridge_provider::sandbox::PORTAL_TTL_SECS,
    ));
    Ok(Json(PortalLink { url: s.url }))
}
