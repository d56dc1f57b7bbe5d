//! What every handler and worker shares: cheap to clone, built once at start.

use std::sync::Arc;
use std::time::Duration;

use paybridge_core::vault::MasterKey;
use paybridge_provider::sandbox::Sandbox;
use paybridge_provider::stripe::{RetryPolicy, Stripe};
use paybridge_store::{Backend, Db};

use crate::service::verify_cache::VerifyCache;
use crate::service::webhooks::Ingestor;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::workers::leader::Leadership;

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
    /// Per-request timeout of calls to Stripe.
    pub stripe_timeout: Duration,
    /// Retries of calls to Stripe that failed in a retryable way.
    pub stripe_retry: RetryPolicy,
    /// Where this process itself listens, for the sandbox to deliver its events to.
    pub internal_url: String,
    /// How often the reconciler runs.
    pub reconcile_interval: Duration,
    /// How long a payment must have been pending before the reconciler asks about it.
    pub reconcile_after: Duration,
    /// How long a payment may stay `initiated` (its create call unfinished) before the
    /// reconciler takes the call for dead and looks for its intent at the provider.
    /// Longer than a call to the provider with all its retries can last.
    pub reconcile_initiated_after: Duration,
    /// How long after a change the sandbox sends its events.
    pub sandbox_webhook_delay: Duration,
    /// Waits before each attempt of a callback delivery (the first is usually 0).
    pub callback_retry_schedule: Vec<Duration>,
    /// A callback answered 2xx within this long is delivered (15 s).
    pub callback_timeout: Duration,
    /// An endpoint failing for this long is disabled.
    pub callback_disable_after: Duration,
    /// How often an idle event stream gets a keep-alive comment.
    pub stream_keep_alive: Duration,
    /// Whether `/` shows the demo app's storefront (`paybridge serve` without `--no-demo`).
    pub storefront: bool,
    /// This process, in delivery attempt logs.
    pub node: String,
    /// The database URL (PostgreSQL nodes listen on it for each other's events).
    pub database_url: String,
    /// Connection cap and timeouts of the listener.
    pub listen: crate::listen::Limits,
    /// Open event streams one key may hold (a publishable key: per client address).
    pub max_streams_per_key: usize,
    /// Request rates per key and per client address.
    pub rate_limits: crate::http::limits::RateLimits,
    /// Proxies whose `X-Forwarded-For` names the client (none by default).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How often the catch-up worker reads each Stripe app's events; `None` takes the
    /// default (see `event_sync_interval()`).
    pub event_sync_every: Option<Duration>,
}

/// Svix's schedule: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h
/// (about 28 hours in all).
pub const DEFAULT_RETRY_SCHEDULE: [u64; 8] = [0, 5, 300, 1800, 7200, 18000, 36000, 36000];

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
            stripe_timeout: Duration::from_secs(30),
            stripe_retry: RetryPolicy::default(),
            internal_url: String::new(),
            reconcile_interval: Duration::from_secs(300),
            reconcile_after: Duration::from_secs(60),
            reconcile_initiated_after: Duration::from_secs(600),
            sandbox_webhook_delay: Duration::ZERO,
            callback_retry_schedule: DEFAULT_RETRY_SCHEDULE
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            callback_disable_after: Duration::from_secs(5 * 24 * 3600),
            callback_timeout: Duration::from_secs(15),
            stream_keep_alive: Duration::from_secs(15),
            storefront: false,
            node: format!("node-{}", std::process::id()),
            database_url: String::new(),
            listen: crate::listen::Limits::default(),
            max_streams_per_key: 32,
            rate_limits: crate::http::limits::RateLimits::default(),
            trusted_proxies: Vec::new(),
            event_sync_every: None,
        }
    }

    /// Whether Stripe cannot reach this server (no public URL): then polling Stripe's
    /// event list is the whole delivery path.
    pub fn polling_only(&self) -> bool {
        crate::service::stripe_endpoint::unreachable_reason(&self.public_url).is_some()
    }

    /// Between catch-up rounds: as set, or 5 s when polling is the whole delivery path
    /// and 5 min when it only backs up webhooks.
    pub fn event_sync_interval(&self) -> Duration {
        self.event_sync_every.unwrap_or(if self.polling_only() {
            Duration::from_secs(5)
        } else {
            Duration::from_secs(300)
        })
    }
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub db: Db,
    pub vault: MasterKey,
    pub settings: Settings,
    pub metrics: Metrics,
    pub stripe: Arc<Stripe>,
    pub sandbox: Arc<Sandbox>,
    /// Wakes the sandbox's event delivery when it has something to send.
    pub sandbox_wake: Arc<Notify>,
    /// Group commit of incoming webhook events.
    pub ingestor: Ingestor,
    /// Apps' webhook verification material, briefly cached.
    pub webhook_keys: VerifyCache,
    /// New events, for this node's live streams and callback worker.
    pub hub: Hub,
    /// Cancelled when the server shuts down: workers and open streams end.
    pub stop: CancellationToken,
    /// Whether this node runs the cluster-wide workers now.
    pub leadership: Leadership,
    /// This node's rate-limit buckets.
    pub limiter: crate::http::limits::Limiter,
    /// Event streams open on this node, per key.
    pub streams: crate::http::streams::OpenStreams,
    /// What the demo shop's own back end remembers (its shopper's sessions).
    pub demo_shop: crate::http::demo_shop::Memo,
}

impl AppState {
    pub fn new(db: Db, vault: MasterKey, settings: Settings) -> AppState {
        let sandbox_wake = Arc::new(Notify::new());
        let stripe = Arc::new(Stripe::new(
            &settings.stripe_api_base,
            settings.stripe_timeout,
            settings.stripe_retry.clone(),
        ));
        let sandbox = Arc::new(Sandbox::new(
            db.clone(),
            &settings.public_url,
            sandbox_wake.clone(),
            settings.sandbox_webhook_delay,
        ));
        let lanes = match db.backend {
            Backend::Sqlite => 1,
            Backend::Postgres => 2,
        };
        let ingestor = Ingestor::start(db.clone(), lanes);
        crate::service::authentication::init(&settings.public_url, &vault);
        AppState(Arc::new(Inner {
            webhook_keys: VerifyCache::default(),
            hub: Hub::default(),
            stop: CancellationToken::new(),
            leadership: Leadership::default(),
            limiter: crate::http::limits::Limiter::new(&settings.rate_limits),
            streams: Default::default(),
            demo_shop: Default::default(),
            ingestor,
            db,
            vault,
            settings,
            metrics: Metrics::new(),
            stripe,
            sandbox,
            sandbox_wake,
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
