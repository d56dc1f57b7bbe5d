//! `paybridge-bench`: starts the release `paybridge` binary on a fresh database, drives
//! it with a closed-loop load generator (N connections, each sending its next request
//! when the last one answered) and prints throughput and latency percentiles, for
//! several runs, with the median of each figure. See BENCHMARKS.md for results.
//!
//!     cargo build --release -p paybridge -p paybridge-bench
//!     target/release/paybridge-bench products --backend sqlite --runs 5
//!     target/release/paybridge-bench startup --runs 10

mod callbacks;
mod cpu;
mod floor;
mod load;
mod server;
mod webhooks;
mod wire;

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use paybridge_testkit::Backend;
use serde_json::json;

use crate::load::{median, Stats};
use crate::server::BenchServer;

#[derive(Parser)]
#[command(about = "Benchmarks for paybridge")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Db {
    Sqlite,
    Postgres,
}

impl From<Db> for Backend {
    fn from(d: Db) -> Backend {
        match d {
            Db::Sqlite => Backend::Sqlite,
            Db::Postgres => Backend::Postgres,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Authenticated `GET /v1/products` (publishable key, 10 products per page).
    Products {
        #[arg(long, value_enum, default_value = "sqlite")]
        backend: Db,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Webhook ingest: distinct signed events about existing payments, each verified,
    /// stored and applied before its 200.
    Webhooks {
        #[arg(long, value_enum, default_value = "sqlite")]
        backend: Db,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// How many payments the events are about.
        #[arg(long, default_value_t = 500)]
        payments: usize,
        /// `cheap`: events signed and encoded before the clock starts (the headline);
        /// `signing`: each event built and signed on the clock; `both`.
        #[arg(long, value_enum, default_value = "both")]
        generator: webhooks::Generator,
        /// Skip the floor receiver (run by default in each run, after paybridge).
        #[arg(long)]
        no_floor: bool,
        /// Events signed in advance per run (0: enough for 12,000/s).
        #[arg(long, default_value_t = 0)]
        events: usize,
        /// Events about payment intents paybridge never created (kept as pending).
        #[arg(long)]
        unknown: bool,
    },
    /// The floor receiver (started by `webhooks`): verify, store the raw event, group
    /// commit; `--db` is a SQLite file (`synchronous=FULL`) or a PostgreSQL URL.
    #[command(hide = true)]
    FloorServe {
        #[arg(long)]
        db: String,
        #[arg(long)]
        secret: String,
    },
    /// `POST /v1/checkout/sessions` on the sandbox (order, payment, session per request).
    Checkout {
        #[arg(long, value_enum, default_value = "sqlite")]
        backend: Db,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Callback delivery: a backlog drained to a local receiver (callbacks/s).
    CallbackDrain {
        #[arg(long, value_enum, default_value = "sqlite")]
        backend: Db,
        /// Deliveries in the backlog.
        #[arg(long, default_value_t = 20_000)]
        backlog: usize,
        /// `paybridge serve` processes sharing the database (PostgreSQL).
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Callback delivery: lag from an event's commit to its first attempt's arrival,
    /// with events written one per transaction at a steady rate.
    CallbackLag {
        #[arg(long, value_enum, default_value = "sqlite")]
        backend: Db,
        #[arg(long, default_value_t = 500)]
        rate: u64,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Time from starting `paybridge serve` to its first 200 on `/healthz`.
    Startup {
        #[arg(long, value_enum, default_value = "sqlite")]
        backend: Db,
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Products {
            backend,
            connections,
            seconds,
            runs,
        } => {
            products(
                backend.into(),
                connections,
                Duration::from_secs(seconds),
                runs,
            )
            .await
        }
        Command::Startup { backend, runs } => startup(backend.into(), runs).await,
        Command::CallbackDrain {
            backend,
            backlog,
            nodes,
            runs,
        } => callbacks::drain(backend.into(), nodes, backlog, runs).await,
        Command::CallbackLag {
            backend,
            rate,
            seconds,
            runs,
        } => callbacks::lag(backend.into(), rate, seconds, runs).await,
        Command::Webhooks {
            backend,
            connections,
            seconds,
            runs,
            payments,
            generator,
            no_floor,
            events,
            unknown,
        } => {
            webhooks::run(webhooks::Options {
                backend: backend.into(),
                connections,
                dur: Duration::from_secs(seconds),
                runs,
                payments,
                generator,
                floor: !no_floor,
                events,
                unknown,
            })
            .await
        }
        Command::FloorServe { db, secret } => floor::serve(&db, &secret).await,
        Command::Checkout {
            backend,
            connections,
            seconds,
            runs,
        } => {
            webhooks::checkout(
                backend.into(),
                connections,
                Duration::from_secs(seconds),
                runs,
            )
            .await
        }
    }
}

async fn products(
    backend: Backend,
    connections: usize,
    dur: Duration,
    runs: usize,
) -> anyhow::Result<()> {
    let mut results: Vec<Stats> = Vec::new();
    for run in 1..=runs {
        let s = BenchServer::start(backend, &[]).await?;
        let app = s.app().await?;
        for i in 0..10 {
            s.post(
                "/v1/products",
                &app.admin,
                json!({"name": format!("Product {i}"), "unit_amount": 100 + i, "currency": "usd"}),
            )
            .await?;
        }
        let url = s.url("/v1/products");
        let key = app.publishable.clone();
        let stats = load::run(connections, dur, move |c, _| c.get(&url).bearer_auth(&key)).await;
        println!("run {run}: {stats}");
        results.push(stats);
    }
    println!(
        "GET /v1/products on {backend:?}, {connections} connections, {runs} runs of {}s: median {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, errors {}",
        dur.as_secs(),
        median(results.iter().map(|s| s.rps)),
        median(results.iter().map(|s| s.p50_ms)),
        median(results.iter().map(|s| s.p99_ms)),
        results.iter().map(|s| s.errors).sum::<u64>(),
    );
    Ok(())
}

async fn startup(backend: Backend, runs: usize) -> anyhow::Result<()> {
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for run in 1..=runs {
        let db = paybridge_testkit::TestDb::new(backend)
            .await
            .ok_or_else(|| anyhow::anyhow!("database unavailable"))?;
        for (label, out) in [("first start", &mut cold), ("restart", &mut warm)] {
            let started = Instant::now();
            let s = BenchServer::start_on(&db, &[("PAYBRIDGE_NO_DEMO", "false")]).await?;
            let client = reqwest::Client::new();
            loop {
                if let Ok(r) = client.get(s.url("/healthz")).send().await {
                    if r.status().is_success() {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            println!("run {run} {label}: {ms:.1} ms to the first 200 on /healthz");
            out.push(ms);
            drop(s);
        }
    }
    println!(
        "startup on {backend:?}, {runs} runs: median {:.1} ms on a new database (migrations + demo app), {:.1} ms on an existing one",
        median(cold.into_iter()),
        median(warm.into_iter())
    );
    Ok(())
}
