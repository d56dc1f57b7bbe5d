//! Zero-touch Stripe webhooks: when an app's Stripe secret key is set, paybridge makes
//! its own webhook endpoint at Stripe — the app's `webhook_callback_url`, exactly the
//! event types paybridge reads, the API version paybridge parses, `metadata[pb_app]` —
//! and keeps its signing secret sealed like every secret. A new key or a new public URL
//! updates or replaces that endpoint and removes the old one. Endpoints without our
//! `pb_app` mark (made by hand) are never touched.
//!
//! Where paybridge cannot make one, the app is told why and what to do instead: a
//! public URL Stripe cannot reach (loopback, private, `localhost`) leaves polling
//! (`service::event_sync`) as the whole delivery path; a restricted key without the
//! webhook permission, or a refusal, leaves the manual signing secret (and polling).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

use paybridge_core::stripe::event::{HANDLED, META_APP};
use paybridge_core::stripe::objects::WebhookEndpoint;
use paybridge_core::ProviderKind;
use paybridge_provider::stripe::STRIPE_VERSION;
use paybridge_provider::{Call, NewWebhookEndpoint, Provider, ProviderError};
use paybridge_store::config::{self, ConfigRow};
use paybridge_store::stripe_endpoints::{self, EndpointRow};
use secrecy::SecretString;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The endpoint paybridge made and whose secret it holds.
pub const MANAGED: &str = "managed";
/// The signing secret was set by hand (`PUT /v1/payment_config/signing_secret`).
pub const MANUAL: &str = "manual";
/// Stripe cannot reach the public URL: polling is the delivery path.
pub const UNREACHABLE_URL: &str = "unreachable_url";
/// The key may not manage webhook endpoints (a restricted key).
pub const PERMISSION_DENIED: &str = "permission_denied";
/// Stripe refused or could not be reached; the message says why.
pub const FAILED: &str = "failed";

/// Where Stripe sends the app's events.
pub fn callback_url(state: &AppState, app: &str) -> String {
    format!("{}/v1/webhooks/stripe/{app}", state.settings.public_url)
}

/// The event types the endpoint asks for: exactly those paybridge reads.
pub fn enabled_events() -> Vec<String> {
    HANDLED.iter().map(|s| (*s).to_owned()).collect()
}

/// Why Stripe could not reach this public URL, if it could not: not http(s), a
/// loopback, private or otherwise non-public address, or a name only this network knows.
pub fn unreachable_reason(public_url: &str) -> Option<String> {
    let Ok(url) = url::Url::parse(public_url) else {
        return Some(format!("the public URL {public_url} is not a URL"));
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Some(format!("the public URL {public_url} is not http(s)"));
    }
    let private = match url.host() {
        None => true,
        Some(url::Host::Ipv4(ip)) => !paybridge_core::net::is_public(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => !paybridge_core::net::is_public(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            !d.contains('.')
                || [
                    ".localhost",
                    ".local",
                    ".internal",
                    ".lan",
                    ".home.arpa",
                    ".test",
                ]
                .iter()
                .any(|s| d.ends_with(s))
        }
    };
    private.then(|| {
        format!("Stripe cannot reach the public URL {public_url} (a loopback, private or local address)")
    })
}

/// What an app without an endpoint of ours can do instead.
fn fallback(state: &AppState, app: &str) -> String {
    format!(
        "Events still arrive: paybridge polls Stripe's event list every {} s. For webhooks, \
         make an endpoint by hand in the Stripe Dashboard (URL {}, API version {STRIPE_VERSION}) \
         and PUT /v1/payment_config/signing_secret with its signing secret.",
        state.settings.event_sync_interval().as_secs(),
        callback_url(state, app)
    )
}

/// One setup at a time per app on this node, so two key changes cannot both create.
fn app_lock(app: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut map = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    map.entry(app.to_owned()).or_default().clone()
}

fn ours(e: &WebhookEndpoint, app: &str) -> bool {
    e.metadata
        .as_ref()
        .and_then(|m| m.get(META_APP))
        .is_some_and(|a| a == app)
}

fn row(
    app: &str,
    setup: &str,
    message: Option<String>,
    e: Option<&WebhookEndpoint>,
) -> EndpointRow {
    EndpointRow {
        app_id: app.to_owned(),
        setup: setup.to_owned(),
        message,
        endpoint_id: e.map(|e| e.id.clone()),
        url: e.map(|e| e.url.clone()),
        status: e.and_then(|e| e.status.clone()),
        api_version: e.and_then(|e| e.api_version.clone()),
        enabled_events: e.map(|e| serde_json::json!(e.enabled_events).to_string()),
        updated: 0,
    }
}

fn call(state: &AppState, app: &str, key: SecretString, op: &str) -> Call {
    let nonce = ulid::Ulid::new().to_string().to_ascii_lowercase();
    Call::new(
        app,
        Some(key),
        &format!("{app}_webhook_endpoint_{op}_{nonce}"),
    )
    .fenced(super::provider::fence(state))
}

/// Makes, updates or replaces the app's own endpoint at Stripe so that it matches the
/// current key and public URL, and records the outcome. `previous_key` is the key the
/// app had before this change: an endpoint of ours in that key's account, which the new
/// key cannot see, is removed with it. Never fails the caller: every failure becomes a
/// recorded setup state with a message naming the fallback.
pub async fn ensure(
    state: &AppState,
    app: &str,
    previous_key: Option<SecretString>,
) -> ApiResult<Option<EndpointRow>> {
    let lock = app_lock(app);
    let _held = lock.lock().await;
    let Some(cfg) = config::get(&state.db, app).await? else {
        return Ok(None);
    };
    if ProviderKind::parse(&cfg.provider) != Some(ProviderKind::Stripe) {
        return Ok(None);
    }
    let Some(key) = super::config::provider_secret_key(state, &cfg)? else {
        return Ok(None);
    };
    let stored = stripe_endpoints::get(&state.db, app).await?;
    let stripe: &dyn Provider = state.stripe.as_ref();
    let outcome = reconcile(state, stripe, app, &cfg, key, previous_key, stored.as_ref()).await;
    let recorded = match outcome {
        Ok(r) => r,
        Err(e) => {
            let (setup, what) = match &e {
                ProviderError::Permission { message } => (
                    PERMISSION_DENIED,
                    format!(
                        "This Stripe key may not manage webhook endpoints ({message}); a restricted \
                         key needs the \"Webhook Endpoints: write\" permission, then set the key again."
                    ),
                ),
                other => (
                    FAILED,
                    format!("paybridge could not set up its webhook endpoint at Stripe: {other}."),
                ),
            };
            tracing::warn!(app, setup, error = %e, "no webhook endpoint of ours at Stripe");
            row(
                app,
                setup,
                Some(format!("{what} {}", fallback(state, app))),
                None,
            )
        }
    };
    Ok(Some(stripe_endpoints::put(&state.db, &recorded).await?))
}

async fn reconcile(
    state: &AppState,
    stripe: &dyn Provider,
    app: &str,
    cfg: &ConfigRow,
    key: SecretString,
    previous_key: Option<SecretString>,
    stored: Option<&EndpointRow>,
) -> Result<EndpointRow, ProviderError> {
    let url = callback_url(state, app);
    let stored_id = stored
        .filter(|r| r.setup == MANAGED)
        .and_then(|r| r.endpoint_id.clone());
    if let (Some(reason), None) = (unreachable_reason(&state.settings.public_url), &stored_id) {
        return Ok(row(
            app,
            UNREACHABLE_URL,
            Some(format!("{reason}. {}", fallback(state, app))),
            None,
        ));
    }
    let listed: Vec<WebhookEndpoint> = stripe
        .list_webhook_endpoints(&call(state, app, key.clone(), "list"))
        .await?
        .into_iter()
        .filter_map(|v| serde_json::from_value::<WebhookEndpoint>(v).ok())
        .filter(|e| ours(e, app))
        .collect();
    // Stripe cannot reach us: any endpoint of ours would only fail. Remove it.
    if let Some(reason) = unreachable_reason(&state.settings.public_url) {
        for e in &listed {
            remove(state, stripe, app, &key, &e.id).await;
        }
        if let (Some(id), Some(prev)) = (&stored_id, &previous_key) {
            if !listed.iter().any(|e| &e.id == id) {
                remove(state, stripe, app, prev, id).await;
            }
        }
        return Ok(row(
            app,
            UNREACHABLE_URL,
            Some(format!("{reason}. {}", fallback(state, app))),
            None,
        ));
    }
    let wanted = enabled_events();
    // The endpoint we made and still hold the secret of, in the key's account, at the
    // API version we parse (Stripe cannot change an endpoint's version): kept, and
    // pointed at the current URL and event list when they moved.
    let kept = listed.iter().find(|e| {
        Some(&e.id) == stored_id.as_ref()
            && cfg.signing_secret_sealed.is_some()
            && e.api_version.as_deref() == Some(STRIPE_VERSION)
    });
    let current = match kept {
        Some(e) => {
            let mut have = e.enabled_events.clone();
            have.sort();
            let mut want = wanted.clone();
            want.sort();
            if e.url != url || have != want {
                stripe
                    .update_webhook_endpoint(
                        &call(state, app, key.clone(), "update"),
                        &e.id,
                        &url,
                        &wanted,
                    )
                    .await?
            } else {
                e.clone()
            }
        }
        None => {
            let made = stripe
                .create_webhook_endpoint(
                    &call(state, app, key.clone(), "create"),
                    &NewWebhookEndpoint {
                        url: url.clone(),
                        enabled_events: wanted,
                        api_version: STRIPE_VERSION.to_owned(),
                        description: format!("paybridge app {app} (managed by paybridge)"),
                        metadata: [(META_APP.to_owned(), app.to_owned())].into(),
                    },
                )
                .await?;
            let Some(secret) = made.secret.clone().filter(|s| !s.is_empty()) else {
                remove(state, stripe, app, &key, &made.id).await;
                return Err(ProviderError::Invalid {
                    code: None,
                    param: None,
                    message: "Stripe made the endpoint but sent no signing secret".into(),
                });
            };
            if let Err(e) = super::config::set_signing_secret(state, app, &secret).await {
                remove(state, stripe, app, &key, &made.id).await;
                return Err(ProviderError::Invalid {
                    code: None,
                    param: None,
                    message: format!("the endpoint's signing secret was refused: {}", e.message),
                });
            }
            made
        }
    };
    // Every other endpoint of ours in this account is a leftover: a replaced one, or a
    // twin from a setup that raced this one on another node.
    for e in listed.iter().filter(|e| e.id != current.id) {
        remove(state, stripe, app, &key, &e.id).await;
    }
    // The endpoint we made under the previous key, if that key's account is another one.
    if let (Some(id), Some(prev)) = (&stored_id, &previous_key) {
        if id != &current.id && !listed.iter().any(|e| &e.id == id) {
            remove(state, stripe, app, prev, id).await;
        }
    }
    Ok(row(app, MANAGED, None, Some(&current)))
}

async fn remove(state: &AppState, stripe: &dyn Provider, app: &str, key: &SecretString, id: &str) {
    match stripe
        .delete_webhook_endpoint(&call(state, app, key.clone(), "delete"), id)
        .await
    {
        Ok(()) | Err(ProviderError::NotFound { .. }) => {
            tracing::info!(
                app,
                endpoint = id,
                "removed a webhook endpoint paybridge had made"
            )
        }
        Err(e) => {
            tracing::warn!(app, endpoint = id, error = %e, "could not remove an old webhook endpoint of ours")
        }
    }
}

/// The app left Stripe (for the sandbox): the endpoint we made there, reachable with
/// the key it had, is removed, and the record says so.
pub async fn forget(
    state: &AppState,
    app: &str,
    previous_key: Option<SecretString>,
) -> ApiResult<()> {
    let lock = app_lock(app);
    let _held = lock.lock().await;
    let Some(stored) = stripe_endpoints::get(&state.db, app).await? else {
        return Ok(());
    };
    if let (Some(id), Some(key), MANAGED) =
        (&stored.endpoint_id, previous_key, stored.setup.as_str())
    {
        remove(state, state.stripe.as_ref(), app, &key, id).await;
    }
    stripe_endpoints::put(
        &state.db,
        &row(
            app,
            MANUAL,
            Some("The app no longer uses Stripe.".into()),
            None,
        ),
    )
    .await?;
    Ok(())
}

/// A signing secret set by hand: the app now uses its own endpoint, so the one we made
/// (which would fail once its secret's grace ends) is removed.
pub async fn set_manual_signing_secret(
    state: &AppState,
    app: &str,
    secret: &str,
) -> ApiResult<ConfigRow> {
    let lock = app_lock(app);
    let _held = lock.lock().await;
    let cfg = super::config::set_signing_secret(state, app, secret).await?;
    let stored = stripe_endpoints::get(&state.db, app).await?;
    if ProviderKind::parse(&cfg.provider) == Some(ProviderKind::Stripe) {
        if let (Some(id), Some(key)) = (
            stored.as_ref().and_then(|r| r.endpoint_id.clone()),
            super::config::provider_secret_key(state, &cfg)?,
        ) {
            remove(state, state.stripe.as_ref(), app, &key, &id).await;
        }
        stripe_endpoints::put(
            &state.db,
            &row(
                app,
                MANUAL,
                Some("The signing secret was set by hand; paybridge does not manage this app's endpoint.".into()),
                None,
            ),
        )
        .await?;
    }
    Ok(cfg)
}

/// At start: brings every Stripe app's endpoint in line with the current public URL
/// (a moved URL, or one that became reachable or unreachable). Apps whose secret was
/// set by hand, before or after this feature, are left alone.
pub async fn refresh_all(state: &AppState) -> Result<usize, ApiError> {
    let url_now = |app: &str| callback_url(state, app);
    let mut changed = 0;
    for (app, setup, url) in stripe_endpoints::stripe_apps(&state.db).await? {
        let stale = match setup.as_deref() {
            Some(MANUAL) => false,
            // Configured by hand before paybridge made endpoints: theirs stays theirs.
            None => !stripe_endpoints::has_signing_secret(&state.db, &app).await?,
            // Pointed elsewhere, or made by a paybridge that read fewer event types.
            Some(MANAGED) => {
                url.as_deref() != Some(url_now(&app).as_str())
                    || !sends_what_we_read(state, &app).await?
            }
            Some(UNREACHABLE_URL) => unreachable_reason(&state.settings.public_url).is_none(),
            // A refusal or an outage may have passed; a missing permission needs the owner.
            Some(FAILED) => true,
            Some(_) => false,
        };
        if stale {
            ensure(state, &app, None).await?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// Whether the endpoint we made sends every event type paybridge reads now.
async fn sends_what_we_read(state: &AppState, app: &str) -> Result<bool, ApiError> {
    let have: Vec<String> = stripe_endpoints::get(&state.db, app)
        .await?
        .and_then(|r| r.enabled_events)
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default();
    Ok(HANDLED.iter().all(|t| have.iter().any(|h| h == t)))
}

#[cfg(test)]
mod tests {
    use super::unreachable_reason;

    #[test]
    fn only_public_urls_can_receive_stripes_webhooks() {
        for url in [
            "https://pay.example.com",
            "http://pay.example.com:8080/pb",
            "https://8.8.8.8",
            "https://[2606:4700::1111]",
        ] {
            assert_eq!(unreachable_reason(url), None, "{url}");
        }
        for url in [
            "http://127.0.0.1:4242",
            "http://localhost:4242",
            "http://[::1]:4242",
            "http://10.0.0.5",
            "http://192.168.1.20:4242",
            "http://169.254.169.254",
            "http://myhost",
            "http://shop.local",
            "http://api.localhost",
            "ftp://pay.example.com",
            "not a url",
        ] {
            assert!(unreachable_reason(url).is_some(), "{url}");
        }
    }
}
