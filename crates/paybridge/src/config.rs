//! Configuration, layered: built-in defaults, then an optional TOML file, then
//! `PAYBRIDGE_*` environment variables, then flags (clap reads env and flags; a flag
//! wins over its variable). Secrets are held as `SecretString`, whose `Debug` is
//! redacted, so printing the configuration never prints them.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use paybridge_server::http::limits::{parse_trusted_proxies, Rate, RateLimits};
use paybridge_server::listen::Limits;
use secrecy::SecretString;
use serde::Deserialize;

#[derive(Args, Debug, Clone, Default)]
pub struct DbArgs {
    /// Database URL: sqlite://<file> (default sqlite://paybridge.db) or postgres://…
    #[arg(long, env = "PAYBRIDGE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// TOML file with any of the settings below (keys as the flags, with underscores).
    #[arg(long, env = "PAYBRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Address to listen on (default 127.0.0.1:4242).
    #[arg(long, env = "PAYBRIDGE_LISTEN")]
    pub listen: Option<String>,
    /// Base of the URLs paybridge hands out (default http://<listen address>).
    #[arg(long, env = "PAYBRIDGE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Base URL of Stripe's API (default https://api.stripe.com).
    #[arg(long, env = "PAYBRIDGE_STRIPE_API_BASE")]
    pub stripe_api_base: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "PAYBRIDGE_JSON_LOGS")]
    pub json_logs: bool,
    /// Do not create the demo app on first start.
    #[arg(long, env = "PAYBRIDGE_NO_DEMO")]
    pub no_demo: bool,
    /// Seconds an idempotency key is kept (default 86400; keep it at least a day).
    #[arg(long, env = "PAYBRIDGE_IDEMPOTENCY_TTL")]
    pub idempotency_ttl: Option<u64>,
    /// Seconds a replaced webhook signing secret stays valid (default 86400).
    #[arg(long, env = "PAYBRIDGE_SIGNING_SECRET_GRACE")]
    pub signing_secret_grace: Option<u64>,
    /// Seconds between housekeeping rounds (default 60).
    #[arg(long, env = "PAYBRIDGE_HOUSEKEEPING_INTERVAL")]
    pub housekeeping_interval: Option<u64>,
    /// Seconds between reconciler rounds (default 300).
    #[arg(long, env = "PAYBRIDGE_RECONCILE_INTERVAL")]
    pub reconcile_interval: Option<u64>,
    /// Seconds between catch-up rounds over each Stripe app's event list (default 300,
    /// or 5 when Stripe cannot reach the public URL; 0 turns the worker off).
    #[arg(long, env = "PAYBRIDGE_EVENT_SYNC_INTERVAL")]
    pub event_sync_interval: Option<u64>,
    /// Seconds a payment must have been pending, processing or requires_action before the
    /// reconciler asks about it (default 60).
    #[arg(long, env = "PAYBRIDGE_RECONCILE_AFTER")]
    pub reconcile_after: Option<u64>,
    /// Seconds a payment may stay initiated (its create call unfinished: the server
    /// died during it) before the reconciler looks for it at the provider (default 600).
    #[arg(long, env = "PAYBRIDGE_RECONCILE_INITIATED_AFTER")]
    pub reconcile_initiated_after: Option<u64>,
    /// Seconds a call to Stripe may take (default 30).
    #[arg(long, env = "PAYBRIDGE_STRIPE_TIMEOUT")]
    pub stripe_timeout: Option<u64>,
    /// Retries of a failed call to Stripe (default 3).
    #[arg(long, env = "PAYBRIDGE_STRIPE_MAX_RETRIES")]
    pub stripe_max_retries: Option<u32>,
    /// First backoff of a retried call to Stripe, in milliseconds (default 500).
    #[arg(long, env = "PAYBRIDGE_STRIPE_RETRY_BASE_MS")]
    pub stripe_retry_base_ms: Option<u64>,
    /// Milliseconds the sandbox waits before sending the events of a change (default 0).
    #[arg(long, env = "PAYBRIDGE_SANDBOX_WEBHOOK_DELAY_MS")]
    pub sandbox_webhook_delay_ms: Option<u64>,
    /// Seconds to wait before each attempt of a callback delivery, comma-separated
    /// (default 0,5,300,1800,7200,18000,36000,36000: eight attempts over about 28 h).
    #[arg(long, env = "PAYBRIDGE_CALLBACK_RETRY_SCHEDULE")]
    pub callback_retry_schedule: Option<String>,
    /// Seconds a callback endpoint may keep failing before it is disabled (default 432000, 5 days).
    #[arg(long, env = "PAYBRIDGE_CALLBACK_DISABLE_AFTER")]
    pub callback_disable_after: Option<u64>,
    /// Seconds a callback endpoint has to answer 2xx (default 15). An attempt in flight
    /// on a node that dies is made again after twice this.
    #[arg(long, env = "PAYBRIDGE_CALLBACK_TIMEOUT")]
    pub callback_timeout: Option<u64>,
    /// Seconds between keep-alive comments on an idle event stream (default 15).
    #[arg(long, env = "PAYBRIDGE_STREAM_KEEP_ALIVE")]
    pub stream_keep_alive: Option<u64>,
    /// This process's name in delivery attempt logs (default the host name and pid).
    #[arg(long, env = "PAYBRIDGE_NODE")]
    pub node: Option<String>,
    /// Connections served at once; more wait to be accepted (default: the open-file
    /// limit less 512, between 64 and 10,000).
    #[arg(long, env = "PAYBRIDGE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a client has to send a request's headers (default 10).
    #[arg(long, env = "PAYBRIDGE_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<u64>,
    /// Seconds an idle kept-alive connection stays open (default 75).
    #[arg(long, env = "PAYBRIDGE_KEEP_ALIVE_TIMEOUT")]
    pub keep_alive_timeout: Option<u64>,
    /// Event streams one key may hold open on a node; for a publishable key, per client
    /// address (default 32).
    #[arg(long, env = "PAYBRIDGE_MAX_STREAMS_PER_KEY")]
    pub max_streams_per_key: Option<usize>,
    /// Requests per second and burst per client address without a key (default 20,100; `off`).
    #[arg(long, env = "PAYBRIDGE_RATE_LIMIT_ANONYMOUS")]
    pub rate_limit_anonymous: Option<String>,
    /// Requests per second and burst per publishable key and client address (default 20,100).
    #[arg(long, env = "PAYBRIDGE_RATE_LIMIT_PUBLISHABLE")]
    pub rate_limit_publishable: Option<String>,
    /// Writes (POST, PUT, PATCH, DELETE) per second and burst per publishable key and
    /// client address (default 5,30).
    #[arg(long, env = "PAYBRIDGE_RATE_LIMIT_PUBLISHABLE_WRITE")]
    pub rate_limit_publishable_write: Option<String>,
    /// Requests per second and burst per admin, server or root key (default 5000,10000).
    #[arg(long, env = "PAYBRIDGE_RATE_LIMIT_SECRET_KEY")]
    pub rate_limit_secret_key: Option<String>,
    /// Webhook requests per second and burst per app (default 1000,5000).
    #[arg(long, env = "PAYBRIDGE_RATE_LIMIT_WEBHOOK")]
    pub rate_limit_webhook: Option<String>,
    /// Proxies (addresses or CIDR ranges, comma-separated) whose X-Forwarded-For names
    /// the client (default none: the socket's peer is the client).
    #[arg(long, env = "PAYBRIDGE_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
}

/// The optional TOML file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub public_url: Option<String>,
    pub stripe_api_base: Option<String>,
    pub root_key: Option<SecretString>,
    pub master_key: Option<SecretString>,
    pub master_key_file: Option<PathBuf>,
    pub json_logs: Option<bool>,
    pub no_demo: Option<bool>,
    pub idempotency_ttl: Option<u64>,
    pub signing_secret_grace: Option<u64>,
    pub housekeeping_interval: Option<u64>,
    pub reconcile_interval: Option<u64>,
    pub event_sync_interval: Option<u64>,
    pub reconcile_after: Option<u64>,
    pub reconcile_initiated_after: Option<u64>,
    pub stripe_timeout: Option<u64>,
    pub stripe_max_retries: Option<u32>,
    pub stripe_retry_base_ms: Option<u64>,
    pub sandbox_webhook_delay_ms: Option<u64>,
    pub callback_retry_schedule: Option<String>,
    pub callback_disable_after: Option<u64>,
    pub callback_timeout: Option<u64>,
    pub stream_keep_alive: Option<u64>,
    pub node: Option<String>,
    pub max_connections: Option<usize>,
    pub header_read_timeout: Option<u64>,
    pub keep_alive_timeout: Option<u64>,
    pub max_streams_per_key: Option<usize>,
    pub rate_limit_anonymous: Option<String>,
    pub rate_limit_publishable: Option<String>,
    pub rate_limit_publishable_write: Option<String>,
    pub rate_limit_secret_key: Option<String>,
    pub rate_limit_webhook: Option<String>,
    pub trusted_proxies: Option<String>,
}

impl FileConfig {
    pub fn load(path: Option<&PathBuf>) -> anyhow::Result<FileConfig> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))
    }
}

pub const DEFAULT_DATABASE_URL: &str = "sqlite://paybridge.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4242";

/// Everything `serve` needs, resolved.
#[derive(Debug)]
pub struct Resolved {
    pub listen: String,
    pub database_url: String,
    pub public_url: Option<String>,
    pub stripe_api_base: String,
    pub root_key: Option<SecretString>,
    pub master_key: Option<SecretString>,
    pub master_key_file: Option<PathBuf>,
    pub json_logs: bool,
    pub no_demo: bool,
    pub idempotency_ttl: Duration,
    pub signing_secret_grace: Duration,
    pub housekeeping_interval: Duration,
    pub reconcile_interval: Duration,
    pub event_sync_interval: Option<Duration>,
    pub reconcile_after: Duration,
    pub reconcile_initiated_after: Duration,
    pub stripe_timeout: Duration,
    pub stripe_max_retries: u32,
    pub stripe_retry_base: Duration,
    pub sandbox_webhook_delay: Duration,
    pub callback_retry_schedule: Vec<Duration>,
    pub callback_disable_after: Duration,
    pub callback_timeout: Duration,
    pub stream_keep_alive: Duration,
    pub node: String,
    pub listen_limits: Limits,
    pub max_streams_per_key: usize,
    pub rate_limits: RateLimits,
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

fn env_secret(name: &str) -> Option<SecretString> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .map(SecretString::from)
}

/// The database URL alone, for the subcommands that only need storage.
pub fn database_url(args: &DbArgs) -> anyhow::Result<String> {
    let file = FileConfig::load(args.config.as_ref())?;
    Ok(args
        .database_url
        .clone()
        .or(file.database_url)
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()))
}

impl Resolved {
    pub fn from_args(args: &ServeArgs) -> anyhow::Result<Resolved> {
        let file = FileConfig::load(args.db.config.as_ref())?;
        let secs = |flag: Option<u64>, file: Option<u64>, default: u64| {
            Duration::from_secs(flag.or(file).unwrap_or(default))
        };
        Ok(Resolved {
            listen: args
                .listen
                .clone()
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            database_url: args
                .db
                .database_url
                .clone()
                .or(file.database_url)
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
            public_url: args.public_url.clone().or(file.public_url),
            stripe_api_base: args
                .stripe_api_base
                .clone()
                .or(file.stripe_api_base)
                .unwrap_or_else(|| "https://api.stripe.com".to_owned()),
            // Secrets come from the environment or the file, never from flags: a flag
            // would show in `ps` and shell history.
            root_key: env_secret("PAYBRIDGE_ROOT_KEY").or(file.root_key),
            master_key: env_secret("PAYBRIDGE_MASTER_KEY").or(file.master_key),
            master_key_file: std::env::var("PAYBRIDGE_MASTER_KEY_FILE")
                .ok()
                .map(PathBuf::from)
                .or(file.master_key_file),
            json_logs: args.json_logs || file.json_logs.unwrap_or(false),
            no_demo: args.no_demo || file.no_demo.unwrap_or(false),
            idempotency_ttl: secs(args.idempotency_ttl, file.idempotency_ttl, 86_400),
            signing_secret_grace: secs(
                args.signing_secret_grace,
                file.signing_secret_grace,
                86_400,
            ),
            housekeeping_interval: secs(args.housekeeping_interval, file.housekeeping_interval, 60),
            reconcile_interval: secs(args.reconcile_interval, file.reconcile_interval, 300),
            event_sync_interval: args
                .event_sync_interval
                .or(file.event_sync_interval)
                .map(Duration::from_secs),
            reconcile_after: secs(args.reconcile_after, file.reconcile_after, 60),
            reconcile_initiated_after: secs(
                args.reconcile_initiated_after,
                file.reconcile_initiated_after,
                600,
            ),
            stripe_timeout: secs(args.stripe_timeout, file.stripe_timeout, 30),
            stripe_max_retries: args
                .stripe_max_retries
                .or(file.stripe_max_retries)
                .unwrap_or(3),
            stripe_retry_base: Duration::from_millis(
                args.stripe_retry_base_ms
                    .or(file.stripe_retry_base_ms)
                    .unwrap_or(500),
            ),
            sandbox_webhook_delay: Duration::from_millis(
                args.sandbox_webhook_delay_ms
                    .or(file.sandbox_webhook_delay_ms)
                    .unwrap_or(0),
            ),
            callback_retry_schedule: match args
                .callback_retry_schedule
                .clone()
                .or(file.callback_retry_schedule)
            {
                Some(s) => paybridge_core::retry::parse_schedule(&s)
                    .map_err(|e| anyhow::anyhow!("PAYBRIDGE_CALLBACK_RETRY_SCHEDULE: {e}"))?,
                None => paybridge_server::state::DEFAULT_RETRY_SCHEDULE
                    .iter()
                    .map(|s| Duration::from_secs(*s))
                    .collect(),
            },
            callback_disable_after: secs(
                args.callback_disable_after,
                file.callback_disable_after,
                5 * 86_400,
            ),
            callback_timeout: secs(args.callback_timeout, file.callback_timeout, 15)
                .clamp(Duration::from_secs(1), Duration::from_secs(60)),
            stream_keep_alive: secs(args.stream_keep_alive, file.stream_keep_alive, 15)
                .max(Duration::from_secs(1)),
            node: args.node.clone().or(file.node).unwrap_or_else(default_node),
            listen_limits: Limits {
                max_connections: args.max_connections.or(file.max_connections),
                header_read_timeout: secs(args.header_read_timeout, file.header_read_timeout, 10)
                    .max(Duration::from_secs(1)),
                keep_alive_timeout: secs(args.keep_alive_timeout, file.keep_alive_timeout, 75)
                    .max(Duration::from_secs(1)),
            },
            max_streams_per_key: args
                .max_streams_per_key
                .or(file.max_streams_per_key)
                .unwrap_or(32)
                .max(1),
            rate_limits: {
                let d = RateLimits::default();
                let rate =
                    |name: &str, flag: &Option<String>, file: Option<String>, default| match flag
                        .clone()
                        .or(file)
                    {
                        Some(s) => Rate::parse(&s).map_err(|e| anyhow::anyhow!("{name}: {e}")),
                        None => Ok(default),
                    };
                RateLimits {
                    anonymous: rate(
                        "PAYBRIDGE_RATE_LIMIT_ANONYMOUS",
                        &args.rate_limit_anonymous,
                        file.rate_limit_anonymous,
                        d.anonymous,
                    )?,
                    publishable: rate(
                        "PAYBRIDGE_RATE_LIMIT_PUBLISHABLE",
                        &args.rate_limit_publishable,
                        file.rate_limit_publishable,
                        d.publishable,
                    )?,
                    publishable_write: rate(
                        "PAYBRIDGE_RATE_LIMIT_PUBLISHABLE_WRITE",
                        &args.rate_limit_publishable_write,
                        file.rate_limit_publishable_write,
                        d.publishable_write,
                    )?,
                    secret_key: rate(
                        "PAYBRIDGE_RATE_LIMIT_SECRET_KEY",
                        &args.rate_limit_secret_key,
                        file.rate_limit_secret_key,
                        d.secret_key,
                    )?,
                    webhook: rate(
                        "PAYBRIDGE_RATE_LIMIT_WEBHOOK",
                        &args.rate_limit_webhook,
                        file.rate_limit_webhook,
                        d.webhook,
                    )?,
                }
            },
            trusted_proxies: match args.trusted_proxies.clone().or(file.trusted_proxies) {
                Some(s) => parse_trusted_proxies(&s)
                    .map_err(|e| anyhow::anyhow!("PAYBRIDGE_TRUSTED_PROXIES: {e}"))?,
                None => Vec::new(),
            },
        })
    }
}

/// `<host>-<pid>`: enough to tell which process made an attempt.
fn default_node() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "paybridge".to_owned());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn file_values_fill_what_flags_leave_unset() {
        let dir = std::env::temp_dir().join(format!("pbcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("paybridge.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\ndatabase_url = \"sqlite://x.db\"\nmaster_key = \"c2VjcmV0\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            db: DbArgs {
                database_url: Some("sqlite://flag.db".into()),
                config: Some(path.clone()),
            },
            ..Default::default()
        };
        let r = Resolved::from_args(&args).unwrap();
        assert_eq!(r.listen, "127.0.0.1:9999");
        assert_eq!(r.database_url, "sqlite://flag.db");
        assert_eq!(r.idempotency_ttl, Duration::from_secs(86_400));
        assert_eq!(
            r.master_key
                .as_ref()
                .map(|k| k.expose_secret().to_owned())
                .as_deref(),
            Some("c2VjcmV0")
        );
        assert!(
            !format!("{r:?}").contains("c2VjcmV0"),
            "secrets are redacted in Debug"
        );
        std::fs::write(&path, "nonsense = 1\n").unwrap();
        assert!(Resolved::from_args(&args).is_err());
        std::fs::remove_dir_all(dir).ok();
    }
}
