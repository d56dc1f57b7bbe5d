//! Payment configuration: provider keys and webhook signing secrets, sealed by the
//! vault before they reach storage and opened only where they are used.

use base64::Engine;
use paybridge_core::config::{validate_provider_keys, validate_signing_secret};
use paybridge_core::{Environment, Invalid, ProviderKind};
use paybridge_store::config::{self, ConfigRow};
use paybridge_store::now;
use rand::RngCore;
use secrecy::SecretString;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

fn context(app: &str, field: &str) -> String {
    format!("{app}/{field}")
}

/// Sets the provider and its keys. A sandbox app without a signing secret gets one,
/// since the sandbox signs its own events with it.
pub async fn set_provider(
    state: &AppState,
    app: &str,
    env: Environment,
    provider: ProviderKind,
    public_key: Option<&str>,
    secret_key: Option<&str>,
) -> ApiResult<ConfigRow> {
    validate_provider_keys(env, provider, public_key, secret_key)?;
    // The key this app had, to remove the endpoint we made in its account if the new
    // key belongs to another one.
    let previous_key = match config::get(&state.db, app).await? {
        Some(r) if r.provider == ProviderKind::Stripe.as_str() => provider_secret_key(state, &r)?,
        _ => None,
    };
    let sealed = secret_key
        .filter(|k| !k.is_empty())
        .map(|k| state.vault.seal(k, &context(app, "provider_secret_key")));
    state.webhook_keys.invalidate(app);
    let row = config::put_provider(
        &state.db,
        app,
        provider.as_str(),
        public_key.filter(|k| !k.is_empty()),
        sealed.as_deref(),
    )
    .await?;
    if provider == ProviderKind::Sandbox && row.signing_secret_sealed.is_none() {
        let mut bytes = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let secret = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        );
        return set_signing_secret(state, app, &secret).await;
    }
    if provider == ProviderKind::Stripe {
        // Records its outcome (and the fallback) rather than failing the change of keys.
        super::stripe_endpoint::ensure(state, app, previous_key).await?;
        return config::get(&state.db, app)
            .await?
            .ok_or_else(|| ApiError::internal("the configuration vanished"));
    }
    Ok(row)
}

/// Stores a new signing secret; the one it replaces stays valid for the grace period.
pub async fn set_signing_secret(state: &AppState, app: &str, secret: &str) -> ApiResult<ConfigRow> {
    validate_signing_secret(secret)?;
    let sealed = state.vault.seal(secret, &context(app, "signing_secret"));
    let grace_until = now() + state.settings.signing_secret_grace.as_secs() as i64;
    state.webhook_keys.invalidate(app);
    config::put_signing_secret(&state.db, app, &sealed, grace_until)
        .await?
        .ok_or_else(|| {
            ApiError::from(Invalid::new(
                "signing_secret",
                "payment_config_missing",
                "set the provider first (PUT /v1/payment_config), then its signing secret",
            ))
            .with_code("payment_config_missing")
        })
}

/// Ready to take payments and learn their outcomes: a provider, its keys (Stripe), and
/// a signing secret, or for Stripe with no public URL (`polling_only`) the keys alone,
/// since the catch-up worker then brings every event.
pub fn configured(row: &ConfigRow, polling_only: bool) -> bool {
    is_configured(row)
        || (polling_only
            && row.provider == ProviderKind::Stripe.as_str()
            && row.secret_key_sealed.is_some()
            && row.public_key.is_some())
}

/// Ready to take payments: a provider, its secret key (Stripe) and a signing secret.
pub fn is_configured(row: &ConfigRow) -> bool {
    let keys_ok = match ProviderKind::parse(&row.provider) {
        Some(ProviderKind::Stripe) => row.secret_key_sealed.is_some() && row.public_key.is_some(),
        Some(ProviderKind::Sandbox) => true,
        None => false,
    };
    keys_ok && row.signing_secret_sealed.is_some()
}

/// The signing secrets that verify a webhook now: the current one, and the previous
/// one while its grace period lasts.
pub fn signing_secrets(state: &AppState, row: &ConfigRow) -> ApiResult<Vec<SecretString>> {
    let ctx = context(&row.app_id, "signing_secret");
    let mut out = Vec::with_capacity(2);
    if let Some(s) = &row.signing_secret_sealed {
        out.push(state.vault.open(s, &ctx).map_err(ApiError::internal)?);
    }
    if let (Some(s), Some(until)) = (
        &row.previous_signing_secret_sealed,
        row.previous_signing_secret_expires,
    ) {
        if until > now() {
            out.push(state.vault.open(s, &ctx).map_err(ApiError::internal)?);
        }
    }
    Ok(out)
}

/// The provider's secret key, opened for one call.
pub fn provider_secret_key(state: &AppState, row: &ConfigRow) -> ApiResult<Option<SecretString>> {
    row.secret_key_sealed
        .as_deref()
        .map(|s| {
            state
                .vault
                .open(s, &context(&row.app_id, "provider_secret_key"))
                .map_err(ApiError::internal)
        })
        .transpose()
}
