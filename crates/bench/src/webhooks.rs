//! Webhook ingest and checkout creation under load.

use std::sync::Arc;
use std::time::Duration;

use paybridge_core::stripe::signature;
use paybridge_testkit::Backend;
use serde_json::json;

use crate::cpu;
use crate::load::{self, median, Stats};
use crate::server::BenchServer;
use crate::wire;

const SECRET: &str = "whsec_benchmark_signing_secret_0001";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn report(what: &str, backend: Backend, connections: usize, dur: Duration, results: &[Stats]) {
    println!(
        "{what} on {backend:?}, {connections} connections, {} runs of {}s: median {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, errors {}",
        results.len(),
        dur.as_secs(),
        median(results.iter().map(|s| s.rps)),
        median(results.iter().map(|s| s.p50_ms)),
        median(results.iter().map(|s| s.p99_ms)),
        results.iter().map(|s| s.errors).sum::<u64>(),
    );
}

/// Which load generator drives paybridge.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Generator {
    /// Every request signed and encoded before the clock starts, sent on bare TCP.
    Cheap,
    /// Each request built, signed and sent with `reqwest` on the clock (the old one).
    Signing,
    /// Both, one after the other in each run.
    Both,
}

pub struct Options {
    pub backend: Backend,
    pub connections: usize,
    pub dur: Duration,
    pub runs: usize,
    pub payments: usize,
    pub generator: Generator,
    /// Run the floor receiver in each run too.
    pub floor: bool,
    /// Events signed in advance per run and target (0: enough for 12,000/s).
    pub events: usize,
    /// Every event is about a payment intent paybridge never created (another system's
    /// traffic on a shared Stripe account): stored, and kept as pending.
    pub unknown: bool,
}

/// One measured load: what the client saw, and what the measured process used.
struct Measured {
    stats: Stats,
    usage: cpu::Usage,
    /// Bytes per event: passed to write(2)/pwrite(2), and sent to the storage layer.
    wchar: f64,
    write_bytes: f64,
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}; {}; written per event {:.0} B (syscalls), {:.0} B (to storage)",
            self.stats, self.usage, self.wchar, self.write_bytes
        )
    }
}

/// A body of the `n`-th event, about `targets[n % len]`.
fn event_body(tag: &str, n: u64, targets: &[(String, String)]) -> String {
    let (payment, pi) = &targets[(n as usize) % targets.len()];
    let (kind, status) = match n % 3 {
        0 => ("payment_intent.processing", "processing"),
        1 => ("payment_intent.succeeded", "succeeded"),
        _ => ("payment_intent.requires_action", "requires_action"),
    };
    json!({
        "id": format!("evt_{tag}_{n}"), "object": "event", "type": kind, "created": now(), "livemode": false,
        "data": {"object": {"id": pi, "object": "payment_intent", "status": status, "amount": 1000,
            // Stripe's payment intents carry their client secret; paybridge cuts it out.
            "client_secret": format!("{pi}_secret_benchmark0000"),
            "amount_received": if status == "succeeded" { 1000 } else { 0 }, "currency": "usd",
            "metadata": if payment.is_empty() { json!({}) } else { json!({"pb_payment": payment}) }}}
    })
    .to_string()
}

/// `count` distinct signed events, encoded as POSTs to `path` on `authority`.
fn presign(
    tag: &str,
    count: usize,
    targets: &[(String, String)],
    authority: &str,
    path: &str,
) -> Vec<Vec<u8>> {
    (0..count as u64)
        .map(|n| {
            let body = event_body(tag, n, targets);
            let header = signature::sign(body.as_bytes(), SECRET.as_bytes(), now());
            wire::encode_post(
                authority,
                path,
                &[
                    ("content-type", "application/json"),
                    ("stripe-signature", &header),
                ],
                body.as_bytes(),
            )
        })
        .collect()
}

/// Drives `pid` with prepared requests and measures it (and PostgreSQL's processes,
/// if `postgres`).
async fn measure_cheap(
    pid: u32,
    postgres: bool,
    authority: &str,
    connections: usize,
    dur: Duration,
    requests: Vec<Vec<u8>>,
) -> Measured {
    let requests = Arc::new(requests);
    let io0 = cpu::Io::take(pid);
    let before = cpu::Sample::take(pid, postgres);
    let (stats, ran_out) = wire::run(authority, connections, dur, requests.clone()).await;
    let usage = before.until(&cpu::Sample::take(pid, postgres), stats.ok);
    let io1 = cpu::Io::take(pid);
    if ran_out {
        println!(
            "  (the {} prepared events ran out before the {} s were up: raise --events)",
            requests.len(),
            dur.as_secs()
        );
    }
    // Freed off the clock.
    drop(requests);
    let (wchar, write_bytes) = match (io0, io1) {
        (Some(a), Some(b)) => a.per_event(&b, stats.ok),
        _ => (f64::NAN, f64::NAN),
    };
    Measured {
        stats,
        usage,
        wchar,
        write_bytes,
    }
}

/// Drives paybridge with the old generator: each event built and signed on the clock.
async fn measure_signing(
    s: &BenchServer,
    postgres: bool,
    app: &str,
    tag: String,
    targets: Arc<Vec<(String, String)>>,
    connections: usize,
    dur: Duration,
) -> Measured {
    let url = s.url(&format!("/v1/webhooks/stripe/{app}"));
    let io0 = cpu::Io::take(s.pid());
    let before = cpu::Sample::take(s.pid(), postgres);
    let stats = load::run(connections, dur, move |c, n| {
        let body = event_body(&tag, n, &targets);
        let header = signature::sign(body.as_bytes(), SECRET.as_bytes(), now());
        c.post(&url)
            .header("content-type", "application/json")
            .header("stripe-signature", header)
            .body(body)
    })
    .await;
    let usage = before.until(&cpu::Sample::take(s.pid(), postgres), stats.ok);
    let (wchar, write_bytes) = match (io0, cpu::Io::take(s.pid())) {
        (Some(a), Some(b)) => a.per_event(&b, stats.ok),
        _ => (f64::NAN, f64::NAN),
    };
    Measured {
        stats,
        usage,
        wchar,
        write_bytes,
    }
}

fn summary(label: &str, list: &[Measured]) {
    if list.is_empty() {
        return;
    }
    println!(
        "{label}: median {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, errors {}; CPU per event: measured process {:.0} µs,{} load generator {:.0} µs; machine busy {:.0} %; written per event {:.0} B (syscalls), {:.0} B (to storage)",
        median(list.iter().map(|m| m.stats.rps)),
        median(list.iter().map(|m| m.stats.p50_ms)),
        median(list.iter().map(|m| m.stats.p99_ms)),
        list.iter().map(|m| m.stats.errors).sum::<u64>(),
        median(list.iter().map(|m| m.usage.server_us)),
        postgres_summary(list),
        median(list.iter().map(|m| m.usage.generator_us)),
        median(list.iter().map(|m| m.usage.busy * 100.0)),
        median(list.iter().map(|m| m.wchar)),
        median(list.iter().map(|m| m.write_bytes)),
    );
}

/// The medians of PostgreSQL's CPU per event and of the measured process's and
/// PostgreSQL's together, for runs on PostgreSQL (empty otherwise).
fn postgres_summary(list: &[Measured]) -> String {
    if !list.iter().all(|m| m.usage.postgres_us.is_finite()) {
        return String::new();
    }
    format!(
        " PostgreSQL {:.0} µs, the two together {:.0} µs,",
        median(list.iter().map(|m| m.usage.postgres_us)),
        median(list.iter().map(|m| m.usage.server_us + m.usage.postgres_us)),
    )
}

pub async fn run(o: Options) -> anyhow::Result<()> {
    let Options {
        backend,
        connections,
        dur,
        runs,
        payments,
        generator,
        floor,
        events,
        unknown,
    } = o;
    let events = if events == 0 {
        (dur.as_secs() as usize * 12_000).max(20_000)
    } else {
        events
    };
    let postgres = backend == Backend::Postgres;
    let (mut cheap, mut signing, mut floors, mut ratios) = (vec![], vec![], vec![], vec![]);
    println!(
        "CPU reference: {:.0} ms (a fixed loop on one core; lower is a faster machine)",
        cpu::reference_ms()
    );
    for run in 1..=runs {
        let s = BenchServer::start(backend, &[]).await?;
        let app = s.app().await?;
        s.put(
            "/v1/payment_config",
            &app.admin,
            json!({"provider": "sandbox"}),
        )
        .await?;
        s.put(
            "/v1/payment_config/signing_secret",
            &app.admin,
            json!({"signing_secret": SECRET}),
        )
        .await?;
        // The payments the events are about.
        let mut targets = Vec::with_capacity(payments);
        for chunk in (0..payments).collect::<Vec<_>>().chunks(16) {
            let futs = chunk.iter().map(|_| {
                s.post(
                    "/v1/payments",
                    &app.server,
                    json!({"amount": 1000, "currency": "usd", "method": "payment_intent"}),
                )
            });
            for p in futures::future::join_all(futs).await {
                let p = p?;
                targets.push((
                    p["id"].as_str().unwrap_or_default().to_owned(),
                    p["provider"]["payment_intent"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                ));
            }
        }
        if unknown {
            // Intents of another system: no payment of ours names them.
            targets = (0..payments.max(1))
                .map(|i| (String::new(), format!("pi_foreign_{i}")))
                .collect();
        }
        let targets = Arc::new(targets);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle_before = s.rss_mib().unwrap_or(f64::NAN);
        let tag = format!("{run}{}", now());
        let mut paybridge_rps = f64::NAN;
        if generator != Generator::Signing {
            let authority = wire::authority(&s.base).to_owned();
            let path = format!("/v1/webhooks/stripe/{}", app.id);
            let requests = presign(&format!("{tag}c"), events, &targets, &authority, &path);
            let groups0 = group_commits(&s).await;
            let m = measure_cheap(s.pid(), postgres, &authority, connections, dur, requests).await;
            let groups = writer_use(groups0, group_commits(&s).await, m.stats.ok);
            println!("run {run} paybridge, cheap generator: {m}{groups}");
            paybridge_rps = m.stats.rps;
            cheap.push(m);
        }
        if generator != Generator::Cheap {
            let m = measure_signing(
                &s,
                postgres,
                &app.id,
                format!("{tag}s"),
                targets.clone(),
                connections,
                dur,
            )
            .await;
            println!("run {run} paybridge, signing generator: {m}");
            signing.push(m);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle_after = s.rss_mib().unwrap_or(f64::NAN);
        println!(
            "run {run}: server RSS idle {idle_before:.1} MiB before the load, {idle_after:.1} MiB 2 s after it"
        );
        drop(s);
        if floor {
            let f = FloorProcess::start(backend).await?;
            let authority = wire::authority(&f.base).to_owned();
            let requests = presign(&format!("{tag}f"), events, &targets, &authority, "/hook");
            let m = measure_cheap(f.pid(), postgres, &authority, connections, dur, requests).await;
            println!("run {run} floor, cheap generator: {m}");
            if paybridge_rps.is_finite() {
                let ratio = paybridge_rps / m.stats.rps;
                println!("run {run}: paybridge / floor = {ratio:.2}");
                ratios.push(ratio);
            }
            floors.push(m);
        }
    }
    println!(
        "webhook ingest on {backend:?}, {connections} connections, {runs} runs of {}s, events about {}:",
        dur.as_secs(),
        if unknown { "intents paybridge does not know" } else { "paybridge's payments" }
    );
    summary("  paybridge, cheap generator", &cheap);
    summary("  paybridge, signing generator", &signing);
    summary("  floor, cheap generator", &floors);
    if !ratios.is_empty() {
        println!(
            "  paybridge / floor (median of the runs' ratios): {:.2}",
            median(ratios.into_iter())
        );
    }
    Ok(())
}

/// The floor receiver (`paybridge-bench floor-serve`) in a process of its own, on a
/// fresh database of `backend`.
struct FloorProcess {
    base: String,
    child: std::process::Child,
    _db: paybridge_testkit::TestDb,
}

impl FloorProcess {
    async fn start(backend: Backend) -> anyhow::Result<FloorProcess> {
        use std::io::{BufRead, BufReader};
        let db = paybridge_testkit::TestDb::new(backend)
            .await
            .ok_or_else(|| anyhow::anyhow!("PostgreSQL unavailable"))?;
        let target = match backend {
            Backend::Sqlite => db.dir.path().join("floor.db").display().to_string(),
            Backend::Postgres => db.url.clone(),
        };
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .args(["floor-serve", "--db", &target])
            .args(["--secret", SECRET])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| l.split("listening on ").nth(1).map(|b| b.trim().to_owned()))
            .ok_or_else(|| anyhow::anyhow!("the floor receiver did not start"))?;
        std::thread::spawn(move || for _ in lines {});
        Ok(FloorProcess {
            base,
            child,
            _db: db,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for FloorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The SQLite writer's group commits, the transactions they held, and the seconds its
/// connection was held, from `/metrics` (`None` on PostgreSQL, or a server without
/// the metrics), with the time they were read.
async fn group_commits(s: &BenchServer) -> Option<WriterReading> {
    let text = reqwest::get(s.url("/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
    };
    Some(WriterReading {
        commits: value("paybridge_db_group_commits ")?,
        transactions: value("paybridge_db_group_transactions ")?,
        held: value("paybridge_db_writer_held_seconds_total ")?,
        checkpoint_steps: value("paybridge_db_checkpoint_steps ").unwrap_or(0.0),
        checkpoint_held: value("paybridge_db_checkpoint_held_seconds_total ").unwrap_or(0.0),
        at: std::time::Instant::now(),
    })
}

/// The SQLite writer's counters (`/metrics`) at one moment.
struct WriterReading {
    commits: f64,
    transactions: f64,
    held: f64,
    checkpoint_steps: f64,
    checkpoint_held: f64,
    at: std::time::Instant,
}

/// What the SQLite writer did for `ok` requests between two readings of
/// `group_commits`: transactions and commits per request, the mean group, the share
/// of the wall time its connection was held, and its checkpoint steps (how often, and
/// how long each held it); empty on PostgreSQL.
fn writer_use(before: Option<WriterReading>, after: Option<WriterReading>, ok: u64) -> String {
    match (before, after) {
        (Some(a), Some(b)) if ok > 0 && b.commits > a.commits => {
            let steps = b.checkpoint_steps - a.checkpoint_steps;
            format!(
                "; per request: {:.2} transactions, {:.2} commits (mean group {:.1}); \
                 writer held {:.0} % of the time, {:.0} µs per request; \
                 {steps:.0} checkpoint steps, {:.1} ms each",
                (b.transactions - a.transactions) / ok as f64,
                (b.commits - a.commits) / ok as f64,
                (b.transactions - a.transactions) / (b.commits - a.commits),
                100.0 * (b.held - a.held) / (b.at - a.at).as_secs_f64(),
                1e6 * (b.held - a.held) / ok as f64,
                1e3 * (b.checkpoint_held - a.checkpoint_held) / steps.max(1.0),
            )
        }
        _ => String::new(),
    }
}

pub async fn checkout(
    backend: Backend,
    connections: usize,
    dur: Duration,
    runs: usize,
) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for run in 1..=runs {
        let s = BenchServer::start(backend, &[]).await?;
        let app = s.app().await?;
        s.put(
            "/v1/payment_config",
            &app.admin,
            json!({"provider": "sandbox"}),
        )
        .await?;
        let product = s
            .post(
                "/v1/products",
                &app.admin,
                json!({"name": "Shirt", "unit_amount": 2500, "currency": "usd"}),
            )
            .await?["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let url = s.url("/v1/checkout/sessions");
        let key = app.publishable.clone();
        let groups0 = group_commits(&s).await;
        let postgres = backend == Backend::Postgres;
        let before = cpu::Sample::take(s.pid(), postgres);
        let stats = load::run(connections, dur, move |c, _| {
            c.post(&url).bearer_auth(&key).json(&json!({
                "line_items": [{"product": product, "quantity": 1}],
                "success_url": "https://shop.example/ok", "cancel_url": "https://shop.example/cart"
            }))
        })
        .await;
        let usage = before.until(&cpu::Sample::take(s.pid(), postgres), stats.ok);
        let groups = writer_use(groups0, group_commits(&s).await, stats.ok);
        println!("run {run}: {stats}; {usage}{groups}");
        results.push((stats, usage));
    }
    let stats: Vec<Stats> = results.iter().map(|(s, _)| s.clone()).collect();
    report(
        "create checkout (requests)",
        backend,
        connections,
        dur,
        &stats,
    );
    let pg = if results.iter().all(|(_, u)| u.postgres_us.is_finite()) {
        format!(
            ", PostgreSQL {:.0} µs",
            median(results.iter().map(|(_, u)| u.postgres_us))
        )
    } else {
        String::new()
    };
    println!(
        "create checkout: CPU per request (median): server {:.0} µs{pg}, load generator {:.0} µs; machine busy {:.0} %",
        median(results.iter().map(|(_, u)| u.server_us)),
        median(results.iter().map(|(_, u)| u.generator_us)),
        median(results.iter().map(|(_, u)| u.busy * 100.0)),
    );
    Ok(())
}
