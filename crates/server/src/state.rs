//! What every handler and worker shares: cheap to clone, built once at start.

use std::sync::Arc;
use std::time::Duration;

use paybridge_core::vault::MasterKey;
use paybridge_store::Db;

use crate::metrics::Metrics;

/// Settings the server runs with, already resolved from flags, env and file.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base of every URL paybridge hands out (`webhook_callback_url`, checkout pages).
    pub public_url: String,
    /// SHA-256 of the operator's root key.
    pub root_key_hash: String,
    /// How long an idempotency key and its response are kept (at least 24 h).
    pub idempotency_ttl: Duration,
    /// After this long a request still marked running is taken to have died.
    pub idempotency_stale: Duration,
    /// How long a replaced webhook signing secret stays valid.
    pub signing_secret_grace: Duration,
    /// How often the housekeeping worker runs.
    pub housekeeping_interval: Duration,
    /// Base URL of Stripe's API (a local fake in tests).
    pub stripe_api_base: String,
}

impl Settings {
    pub fn new(public_url: impl Into<String>, root_key_hash: String) -> Settings {
        Settings {
            public_url: public_url.into().trim_end_matches('/').to_owned(),
            root_key_hash,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            idempotency_stale: Duration::from_secs(300),
            signing_secret_grace: Duration::from_secs(24 * 3600),
            housekeeping_interval: Duration::from_secs(60),
            stripe_api_base: "https://api.stripe.com".to_owned(),
        }
    }
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub db: Db,
    pub vault: MasterKey,
    pub settings: Settings,
    pub metrics: Metrics,
}

impl AppState {
    pub fn new(db: Db, vault: MasterKey, settings: Settings) -> AppState {
        AppState(Arc::new(Inner {
            db,
            vault,
            settings,
            metrics: Metrics::new(),
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
