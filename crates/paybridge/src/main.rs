//! The `paybridge` command: `serve`, and the operator's tools that work without HTTP.

mod allocator;
mod config;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use paybridge_core::keys::Role;
use paybridge_core::vault::MasterKey;
use paybridge_core::Environment;
use paybridge_provider::stripe::RetryPolicy;
use paybridge_server::{bootstrap, service, AppState, Settings};
use paybridge_store::{sqlite_path, Db, DbOptions};
use secrecy::ExposeSecret;
use tracing_subscriber::EnvFilter;

use crate::config::{DbArgs, Resolved, ServeArgs};

#[derive(Parser)]
#[command(
    name = "paybridge",
    version,
    about = "Self-hosted payments backend: Stripe payments for any app through one small API."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API and its workers.
    Serve(ServeArgs),
    /// Apply the database migrations and exit.
    Migrate(DbArgs),
    /// Manage apps.
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Manage API keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Ask the provider about payments left pending or processing, once, and apply the answers.
    Reconcile(ServeArgs),
    /// Read Stripe's event list.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Work with an app's catalog.
    Products {
        #[command(subcommand)]
        command: ProductsCommand,
    },
}

#[derive(Subcommand)]
enum ProductsCommand {
    /// Import the provider's active prices as products of an app.
    Import {
        #[arg(long)]
        app: String,
        #[command(flatten)]
        serve: ServeArgs,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Read a Stripe app's events from Stripe's event list and apply those paybridge
    /// does not have (what the catch-up worker does each round), once, now.
    Sync {
        #[arg(long)]
        app: String,
        /// Read from here instead of where the last round stood: unix seconds, an RFC
        /// 3339 time (`2026-12-01T00:00:00Z`) or an age (`90m`, `12h`, `7d`). Stripe keeps 30 days.
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        serve: ServeArgs,
    },
}

/// `--since`: unix seconds, an RFC 3339 UTC time, or an age before now.
fn parse_since(s: &str, now: i64) -> anyhow::Result<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    if let Some(unit) = s.chars().last().filter(|c| "smhd".contains(*c)) {
        if let Ok(n) = s[..s.len() - 1].parse::<i64>() {
            let mult = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                _ => 86_400,
            };
            return Ok(now - n * mult);
        }
    }
    // YYYY-MM-DDTHH:MM:SS with `Z` or `+00:00`.
    let t = s.trim_end_matches('Z').trim_end_matches("+00:00");
    let parts: Vec<i64> = t
        .split(['-', 'T', ':', ' '])
        .map(|p| p.parse::<i64>())
        .collect::<Result<_, _>>()
        .map_err(|_| {
            anyhow::anyhow!(
                "--since: give unix seconds, 2026-12-01T00:00:00Z or an age such as 12h"
            )
        })?;
    match parts.as_slice() {
        [y, mo, d] | [y, mo, d, _, _] | [y, mo, d, _, _, _]
            if (1..=12).contains(mo) && (1..=31).contains(d) =>
        {
            let day = paybridge_core::civil::days_from_civil(*y, *mo, *d);
            let (h, mi, sec) = (
                parts.get(3).copied().unwrap_or(0),
                parts.get(4).copied().unwrap_or(0),
                parts.get(5).copied().unwrap_or(0),
            );
            Ok(day * 86_400 + h * 3600 + mi * 60 + sec)
        }
        _ => {
            anyhow::bail!("--since: give unix seconds, 2026-12-01T00:00:00Z or an age such as 12h")
        }
    }
}

fn progress_bar(message: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({elapsed})")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

#[derive(Subcommand)]
enum AppCommand {
    /// Create an app and print its keys (shown once) as JSON.
    Create {
        #[arg(long)]
        name: String,
        /// test or live
        #[arg(long, default_value = "test")]
        environment: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Mint a key for an app and print it (shown once) as JSON.
    Create {
        #[arg(long)]
        app: String,
        /// admin, server or publishable
        #[arg(long)]
        role: String,
        /// Extra permission for a server key (repeatable), e.g. refunds:write
        #[arg(long = "permission")]
        permissions: Vec<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a key by id.
    Revoke {
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// Whether logs carry ANSI colour: only on a terminal, and never with `NO_COLOR` set
/// (<https://no-color.org>).
fn colour_logs(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn init_logs(json: bool) {
    let filter = EnvFilter::try_from_env("PAYBRIDGE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    // Colour only for a person at a terminal: a log file or a pipe gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_logs(std::io::stderr().is_terminal()))
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    allocator::return_freed_memory_at_once();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Migrate(db) => {
            init_logs(false);
            let db = open_db(&config::database_url(&db)?).await?;
            db.close().await;
            println!("migrations applied");
            Ok(())
        }
        Command::App {
            command:
                AppCommand::Create {
                    name,
                    environment,
                    db,
                },
        } => {
            let env =
                Environment::parse(&environment).context("--environment must be test or live")?;
            let db = open_db(&config::database_url(&db)?).await?;
            let created = service::apps::create_app(&db, &name, env, false)
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?;
            println!(
                "{}",
                serde_json::json!({
                    "id": created.app.id,
                    "name": created.app.name,
                    "environment": created.app.environment,
                    "keys": {
                        "admin": created.admin.expose(),
                        "server": created.server.expose(),
                        "publishable": created.publishable.expose(),
                    }
                })
            );
            Ok(())
        }
        Command::Key {
            command:
                KeyCommand::Create {
                    app,
                    role,
                    permissions,
                    db,
                },
        } => {
            let role = Role::parse(&role).context("--role must be admin, server or publishable")?;
            let db = open_db(&config::database_url(&db)?).await?;
            let key = service::apps::mint_key(&db, &app, role, &permissions)
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?;
            println!(
                "{}",
                serde_json::json!({"id": key.row.id, "app": app, "role": key.row.role, "key": key.expose()})
            );
            Ok(())
        }
        Command::Reconcile(args) => {
            init_logs(false);
            let p = prepare(&args, None, "http://127.0.0.1".into()).await?;
            let bar = progress_bar("reconciling");
            let report = service::reconcile::run_once(&p.state, 10_000, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
            bar.finish();
            println!(
                "{}",
                serde_json::json!({"checked": report.checked, "changed": report.changed, "failed": report.failed})
            );
            p.state.db.close().await;
            Ok(())
        }
        Command::Events {
            command: EventsCommand::Sync { app, since, serve },
        } => {
            init_logs(false);
            let since = since
                .map(|s| parse_since(&s, paybridge_store::now()))
                .transpose()?;
            let p = prepare(&serve, None, "http://127.0.0.1".into()).await?;
            let bar = progress_bar("reading Stripe's events");
            let mut on_progress = |phase: &'static str, done: usize, total: usize| {
                if phase == "applying" {
                    bar.set_message("applying new events");
                    bar.set_length(total as u64);
                } else {
                    bar.set_length(done as u64);
                }
                bar.set_position(done as u64);
            };
            let report = service::event_sync::sync_app(&p.state, &app, since, &mut on_progress)
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?;
            bar.finish();
            println!("{}", serde_json::to_string(&report)?);
            p.state.db.close().await;
            Ok(())
        }
        Command::Products {
            command: ProductsCommand::Import { app, serve },
        } => {
            init_logs(false);
            let p = prepare(&serve, None, "http://127.0.0.1".into()).await?;
            let bar = progress_bar("importing prices");
            let report = service::catalog::import(&p.state, &app, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
            bar.finish();
            println!("{}", serde_json::to_string(&report)?);
            p.state.db.close().await;
            Ok(())
        }
        Command::Key {
            command: KeyCommand::Revoke { id, db },
        } => {
            let db = open_db(&config::database_url(&db)?).await?;
            paybridge_store::keys::revoke(&db, None, &id)
                .await
                .map_err(|e| anyhow::anyhow!("{id}: {e}"))?;
            println!("{}", serde_json::json!({"id": id, "revoked": true}));
            Ok(())
        }
    }
}

async fn open_db(url: &str) -> anyhow::Result<Db> {
    let db = Db::connect(url, DbOptions::default())
        .await
        .with_context(|| format!("cannot open the database ({})", redact_url(url)))?;
    db.migrate().await?;
    Ok(db)
}

/// The URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

fn master_key(cfg: &Resolved) -> anyhow::Result<(MasterKey, Option<PathBuf>)> {
    if let Some(k) = &cfg.master_key {
        return Ok((
            MasterKey::from_base64(k.expose_secret()).context("PAYBRIDGE_MASTER_KEY")?,
            None,
        ));
    }
    let path = cfg.master_key_file.clone().unwrap_or_else(|| {
        sqlite_path(&cfg.database_url)
            .map(|p| {
                let mut s = p.into_os_string();
                s.push(".key");
                PathBuf::from(s)
            })
            .unwrap_or_else(|| PathBuf::from("paybridge-master.key"))
    });
    let (key, created) = bootstrap::load_or_create_key_file(&path)
        .with_context(|| format!("master key file {}", path.display()))?;
    Ok((key, created.then_some(path)))
}

/// What `serve` and the offline commands share: storage, the vault, the root key and
/// the settings, assembled into the server's state.
struct Prepared {
    cfg: Resolved,
    state: AppState,
    new_key_file: Option<PathBuf>,
    new_root_key: Option<secrecy::SecretString>,
}

async fn prepare(
    args: &ServeArgs,
    public_url: Option<String>,
    internal_url: String,
) -> anyhow::Result<Prepared> {
    let cfg = Resolved::from_args(args)?;
    let db = open_db(&cfg.database_url).await?;
    let (vault, new_key_file) = master_key(&cfg)?;
    bootstrap::check_master_key(&db, &vault).await?;
    let (root_hash, new_root_key) =
        bootstrap::root_key(&db, cfg.root_key.as_ref().map(|k| k.expose_secret())).await?;
    let public_url = cfg
        .public_url
        .clone()
        .or(public_url)
        .unwrap_or_else(|| internal_url.clone());
    let mut settings = Settings::new(public_url, root_hash);
    settings.idempotency_ttl = cfg.idempotency_ttl;
    settings.signing_secret_grace = cfg.signing_secret_grace;
    settings.housekeeping_interval = cfg.housekeeping_interval;
    settings.stripe_api_base = cfg.stripe_api_base.clone();
    settings.stripe_timeout = cfg.stripe_timeout;
    settings.stripe_retry = RetryPolicy {
        max_retries: cfg.stripe_max_retries,
        base_delay: cfg.stripe_retry_base,
        max_delay: cfg.stripe_retry_base * 16,
    };
    settings.internal_url = internal_url;
    settings.reconcile_interval = cfg.reconcile_interval;
    settings.reconcile_after = cfg.reconcile_after;
    settings.event_sync_every = cfg.event_sync_interval;
    settings.reconcile_initiated_after = cfg.reconcile_initiated_after;
    settings.sandbox_webhook_delay = cfg.sandbox_webhook_delay;
    settings.callback_retry_schedule = cfg.callback_retry_schedule.clone();
    settings.callback_disable_after = cfg.callback_disable_after;
    settings.node = cfg.node.clone();
    settings.stream_keep_alive = cfg.stream_keep_alive;
    settings.callback_timeout = cfg.callback_timeout;
    settings.storefront = !cfg.no_demo;
    settings.database_url = cfg.database_url.clone();
    settings.listen = cfg.listen_limits.clone();
    settings.max_streams_per_key = cfg.max_streams_per_key;
    settings.rate_limits = cfg.rate_limits.clone();
    settings.trusted_proxies = cfg.trusted_proxies.clone();
    Ok(Prepared {
        state: AppState::new(db, vault, settings),
        cfg,
        new_key_file,
        new_root_key,
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let resolved = Resolved::from_args(&args)?;
    init_logs(resolved.json_logs);
    let listener = tokio::net::TcpListener::bind(&resolved.listen)
        .await
        .with_context(|| format!("cannot listen on {}", resolved.listen))?;
    let addr: SocketAddr = listener.local_addr()?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        addr.ip().to_string()
    };
    let internal_url = format!("http://{host}:{}", addr.port());
    let Prepared {
        cfg,
        state,
        new_key_file,
        new_root_key,
    } = prepare(&args, None, internal_url).await?;
    let public_url = state.settings.public_url.clone();

    let demo = if cfg.no_demo {
        None
    } else {
        Some(bootstrap::ensure_demo(&state).await?)
    };

    // The banner goes to stdout, apart from the logs: it is the one place a generated
    // key is shown, once.
    println!("  database   {}", redact_url(&cfg.database_url));
    println!("  API docs   {public_url}/docs");
    if let Some(path) = new_key_file {
        println!("  master key created in {} (mode 0600): back it up; without it stored secrets are lost", path.display());
    }
    if let Some(k) = new_root_key {
        println!(
            "  root key   {}   (shown once; set PAYBRIDGE_ROOT_KEY to choose your own)",
            k.expose_secret()
        );
    }
    if let Some(d) = demo {
        println!("  demo app   {} on the sandbox provider", d.app_id);
        println!("  storefront {public_url}/   dashboard {public_url}/admin");
        println!("  publishable key {}", d.publishable_key);
        match (d.admin_key, d.server_key) {
            (Some(a), Some(s)) => {
                println!("  admin key       {a}   (shown once)");
                println!("  server key      {s}   (shown once)");
            }
            _ => println!("  (the demo's admin and server keys were shown at first start; `paybridge key create` mints more)"),
        }
    }
    if state.settings.polling_only() {
        println!(
            "  events     Stripe cannot reach {public_url}: Stripe apps get their events by polling Stripe's event list every {} s (no tunnel or `stripe listen` needed)",
            state.settings.event_sync_interval().as_secs()
        );
    }
    let internal_url = state.settings.internal_url.clone();
    if public_url != internal_url {
        println!("  public URL {public_url}");
    }
    // Last, so whoever waits for this line has the whole banner. The address it
    // listens on, which is the public URL unless one was set.
    println!(
        "paybridge {} listening on {internal_url}",
        env!("CARGO_PKG_VERSION")
    );
    tracing::info!(%addr, "listening");
    paybridge_server::serve(state, listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

#[cfg(test)]
mod tests {
    use super::parse_since;

    #[test]
    fn since_takes_seconds_times_and_ages() {
        let now = 1_800_000_000;
        assert_eq!(parse_since("1700000000", now).unwrap(), 1_700_000_000);
        assert_eq!(parse_since("12h", now).unwrap(), now - 12 * 3600);
        assert_eq!(parse_since("7d", now).unwrap(), now - 7 * 86_400);
        assert_eq!(parse_since("90m", now).unwrap(), now - 90 * 60);
        assert_eq!(
            parse_since("2026-12-01T00:00:00Z", now).unwrap(),
            1_796_083_200
        );
        assert_eq!(parse_since("2026-12-01", now).unwrap(), 1_796_083_200);
        assert_eq!(parse_since("1970-01-01T00:01:05+00:00", now).unwrap(), 65);
        for bad in ["yesterday", "12x", "2026-13-01", ""] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }
}
