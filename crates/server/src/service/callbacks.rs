//! Callback endpoints: the app's URLs, each with its Standard Webhooks secret (shown
//! once, stored sealed, rotated with an overlap) and the event types it wants.

use base64::Engine;
use paybridge_core::ids::EndpointId;
use paybridge_core::{event_types, Environment, Invalid};
use paybridge_store::callbacks::{self, EndpointRow};
use paybridge_store::now;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

use crate::error::{ApiResult, OrNotFound};
use crate::state::AppState;

/// A Standard Webhooks secret: `whsec_` and base64 of 24 random bytes.
pub fn new_secret() -> SecretString {
    let mut key = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut key);
    SecretString::from(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    ))
}

fn context(app: &str, endpoint: &str) -> String {
    format!("{app}/{endpoint}/callback_secret")
}

pub fn validate_events(events: &[String]) -> Result<Vec<String>, Invalid> {
    if events.is_empty() || events.len() > 50 {
        return Err(Invalid::new(
            "events",
            "parameter_invalid",
            "give 1 to 50 event types, or [\"*\"]",
        ));
    }
    for (i, e) in events.iter().enumerate() {
        if !event_types::is_known(e) {
            return Err(Invalid::new(
                format!("events[{i}]"),
                "event_type_unknown",
                format!("`{e}` is not an event type"),
            ));
        }
    }
    let mut v = events.to_vec();
    v.sort();
    v.dedup();
    Ok(v)
}

/// How many endpoints (enabled or disabled) an app may have: Stripe's limit for
/// webhook endpoints. Each one multiplies every event into a delivery, so without a
/// bound one app could queue work for everyone.
pub const MAX_ENDPOINTS_PER_APP: i64 = 16;

/// Creates an endpoint; returns it with its secret, which is shown this once. A live
/// app's URL must be public (see `callback_target`).
pub async fn create(
    state: &AppState,
    app: &str,
    environment: Environment,
    url: &str,
    events: &[String],
) -> ApiResult<(EndpointRow, SecretString)> {
    super::payments::validate_url("url", url)?;
    let events = validate_events(events)?;
    super::callback_target::check_new(environment, url).await?;
    let id = EndpointId::generate().into_string();
    let secret = new_secret();
    let ts = now();
    let row = EndpointRow {
        secret_sealed: state.vault.seal(secret.expose_secret(), &context(app, &id)),
        id,
        app_id: app.to_owned(),
        url: url.to_owned(),
        events: serde_json::to_string(&events).unwrap_or_else(|_| "[\"*\"]".into()),
        previous_secret_sealed: None,
        previous_secret_expires: None,
        status: "enabled".into(),
        failing_since: None,
        disabled_reason: None,
        created: ts,
        updated: ts,
    };
    if !callbacks::insert_endpoint_within(&state.db, &row, MAX_ENDPOINTS_PER_APP).await? {
        return Err(crate::error::ApiError::unprocessable(
            "endpoint_limit_reached",
            format!("an app has at most {MAX_ENDPOINTS_PER_APP} callback endpoints; delete one first (one endpoint can take every event type)"),
        )
        .with_param("url"));
    }
    Ok((row, secret))
}

/// A new secret for an endpoint; the old one keeps signing (beside it) for `overlap_secs`.
pub async fn rotate(
    state: &AppState,
    app: &str,
    id: &str,
    overlap_secs: i64,
) -> ApiResult<(EndpointRow, SecretString)> {
    callbacks::endpoint(&state.db, app, id)
        .await
        .or_404("callback endpoint")?;
    let secret = new_secret();
    let sealed = state.vault.seal(secret.expose_secret(), &context(app, id));
    callbacks::rotate_secret(&state.db, app, id, &sealed, now() + overlap_secs.max(0))
        .await
        .or_404("callback endpoint")?;
    Ok((callbacks::endpoint(&state.db, app, id).await?, secret))
}

/// The secrets that sign a delivery now: the current one, and the previous one while
/// its overlap lasts (Standard Webhooks allows several signatures).
pub fn signing_secrets(
    state: &AppState,
    app: &str,
    endpoint: &str,
    current: &str,
    previous: Option<&str>,
    until: Option<i64>,
) -> Vec<SecretString> {
    let ctx = context(app, endpoint);
    let mut out = Vec::with_capacity(2);
    if let Ok(s) = state.vault.open(current, &ctx) {
        out.push(s);
    }
    if let (Some(p), Some(until)) = (previous, until) {
        if until > now() {
            if let Ok(s) = state.vault.open(p, &ctx) {
                out.push(s);
            }
        }
    }
    out
}

/// A callback endpoint as the API shows it. The secret appears only in the answers
/// that create it (create and rotate).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    pub id: String,
    /// Always `callback_endpoint`.
    pub object: &'static str,
    pub url: String,
    /// The event types delivered (`["*"]`: all).
    pub events: Vec<String>,
    /// `enabled` or `disabled`.
    pub status: String,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Since when its deliveries have been failing (unix seconds), if they are.
    pub failing_since: Option<i64>,
    /// Until when the previous secret also signs (after a rotation).
    pub previous_secret_expires: Option<i64>,
    /// `whsec_…`: shown once, when made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created: i64,
}

impl EndpointView {
    pub fn of(r: &EndpointRow, secret: Option<&SecretString>) -> EndpointView {
        EndpointView {
            id: r.id.clone(),
            object: "callback_endpoint",
            url: r.url.clone(),
            events: serde_json::from_str(&r.events).unwrap_or_default(),
            status: r.status.clone(),
            disabled_reason: r.disabled_reason.clone(),
            failing_since: r.failing_since,
            previous_secret_expires: r.previous_secret_expires.filter(|t| *t > now()),
            secret: secret.map(|s| s.expose_secret().to_owned()),
            created: r.created,
        }
    }
}

/// Enables, disables or deletes an endpoint. Disabling or deleting stops its pending
/// deliveries.
pub async fn set_status(
    state: &AppState,
    app: &str,
    id: &str,
    status: &str,
) -> ApiResult<EndpointRow> {
    callbacks::set_status(&state.db, app, id, status, None)
        .await
        .or_404("callback endpoint")?;
    if status != "enabled" {
        callbacks::cancel_pending(&state.db, id).await?;
        if status == "deleted" {
            let mut row = callbacks::endpoint_any(&state.db, app, id).await?;
            row.status = status.to_owned();
            return Ok(row);
        }
    }
    Ok(callbacks::endpoint(&state.db, app, id).await?)
}

/// Queues a delivery again, now. Not to an endpoint that is disabled or gone.
pub async fn redeliver(state: &AppState, app: &str, id: &str) -> ApiResult<callbacks::DeliveryRow> {
    let d = callbacks::delivery(&state.db, app, id)
        .await
        .or_404("delivery")?;
    let ep = callbacks::endpoint_any(&state.db, app, &d.endpoint_id).await?;
    if ep.status != "enabled" {
        return Err(crate::error::ApiError::conflict(
            "endpoint_not_enabled",
            format!("the endpoint is {}; enable it first", ep.status),
        ));
    }
    callbacks::redeliver(&state.db, app, id)
        .await
        .or_404("delivery")?;
    state.hub.deliveries.notify_one();
    Ok(callbacks::delivery(&state.db, app, id).await?)
}
