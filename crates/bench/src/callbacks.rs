//! Callback delivery: how fast paybridge drains a backlog to a local receiver, and how
//! long an event waits for its first attempt when events keep coming at a steady rate.
//!
//! The receiver runs in this process (axum), checks each signature with the
//! `standardwebhooks` crate and notes when each `webhook-id` arrived. Events are
//! written straight into the server's database with `paybridge_store::events`
//! (the same call the ledger makes, deliveries included), so what is measured is the
//! delivery path alone: hub, claim, sign, POST, record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use paybridge_core::ids::EventId;
use paybridge_store::events::{self, EventRow};
use paybridge_store::{Db, DbOptions};
use paybridge_testkit::{Backend, TestDb};
use serde_json::json;

use crate::load::median;
use crate::server::BenchServer;

#[derive(Clone)]
struct Receiver {
    secret: Arc<Mutex<Option<standardwebhooks::Webhook>>>,
    arrived: Arc<Mutex<HashMap<String, Instant>>>,
    bad: Arc<Mutex<u64>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let ok = r
        .secret
        .lock()
        .unwrap()
        .as_ref()
        .is_some_and(|w| w.verify(&body, &headers).is_ok());
    if !ok {
        *r.bad.lock().unwrap() += 1;
        return StatusCode::BAD_REQUEST;
    }
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    r.arrived
        .lock()
        .unwrap()
        .entry(id)
        .or_insert_with(Instant::now);
    StatusCode::NO_CONTENT
}

async fn start_receiver() -> anyhow::Result<(Receiver, String)> {
    let r = Receiver {
        secret: Arc::default(),
        arrived: Arc::default(),
        bad: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/hooks", axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((r, url))
}

struct Setup {
    _servers: Vec<BenchServer>,
    db: Db,
    app: String,
    receiver: Receiver,
    _test_db: TestDb,
}

/// `nodes` servers on one fresh database, an app with an endpoint for every event.
async fn setup(backend: Backend, nodes: usize) -> anyhow::Result<Setup> {
    let test_db = TestDb::new(backend)
        .await
        .ok_or_else(|| anyhow::anyhow!("database unavailable"))?;
    let mut servers = Vec::new();
    for _ in 0..nodes.max(1) {
        servers.push(BenchServer::start_on(&test_db, &[]).await?);
    }
    let server = &servers[0];
    let app = server.app().await?;
    let (receiver, url) = start_receiver().await?;
    let e = server
        .post("/v1/callback_endpoints", &app.admin, json!({"url": url}))
        .await?;
    let secret = e["secret"].as_str().unwrap_or_default();
    *receiver.secret.lock().unwrap() = Some(standardwebhooks::Webhook::new(secret)?);
    let db = Db::connect(&test_db.url, DbOptions::default()).await?;
    Ok(Setup {
        _servers: servers,
        db,
        app: app.id,
        receiver,
        _test_db: test_db,
    })
}

fn event(app: &str, n: u64) -> EventRow {
    EventRow {
        seq: 0,
        id: EventId::generate().into_string(),
        app_id: app.to_owned(),
        kind: "payment.succeeded".into(),
        object_id: format!("payment_bench_{n}"),
        order_id: None,
        payment_id: None,
        customer_id: None,
        data:
            json!({"id": format!("payment_bench_{n}"), "object": "payment", "status": "succeeded",
            "amount": 1000, "currency": "usd"})
            .to_string(),
        created: 0,
    }
}

async fn write(db: &Db, rows: &[EventRow]) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    events::append_many(&mut tx, rows).await?;
    tx.commit().await?;
    Ok(())
}

/// Waits until the receiver has `n` deliveries (or `limit` passes); returns when the
/// last arrived.
async fn until_all(r: &Receiver, n: usize, limit: Duration) -> anyhow::Result<Instant> {
    let start = Instant::now();
    loop {
        {
            let arrived = r.arrived.lock().unwrap();
            if arrived.len() >= n {
                return Ok(arrived.values().max().copied().unwrap_or(start));
            }
            anyhow::ensure!(
                start.elapsed() < limit,
                "only {} of {n} deliveries arrived",
                arrived.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A backlog of `backlog` deliveries, written in one transaction: deliveries per second
/// until the receiver has them all.
pub async fn drain(
    backend: Backend,
    nodes: usize,
    backlog: usize,
    runs: usize,
) -> anyhow::Result<()> {
    let mut rates = Vec::new();
    for run in 1..=runs {
        let s = setup(backend, nodes).await?;
        let rows: Vec<EventRow> = (0..backlog as u64).map(|n| event(&s.app, n)).collect();
        let t0 = Instant::now();
        write(&s.db, &rows).await?;
        let last = until_all(&s.receiver, backlog, Duration::from_secs(300)).await?;
        let secs = (last - t0).as_secs_f64();
        let rate = backlog as f64 / secs;
        println!(
            "run {run}: {backlog} callbacks delivered in {secs:.2} s: {rate:.0}/s ({} bad signatures)",
            s.receiver.bad.lock().unwrap()
        );
        rates.push(rate);
    }
    println!(
        "callback drain on {backend:?} with {nodes} node(s), {runs} runs of {backlog}: median {:.0} callbacks/s",
        median(rates.into_iter())
    );
    Ok(())
}

/// Events written one per transaction at `rate` per second for `seconds`: the time
/// from each commit to its delivery's arrival at the receiver (first attempts, as the
/// receiver always answers 2xx).
pub async fn lag(backend: Backend, rate: u64, seconds: u64, runs: usize) -> anyhow::Result<()> {
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut maxes = Vec::new();
    for run in 1..=runs {
        let s = setup(backend, 1).await?;
        let total = rate * seconds;
        let mut committed: HashMap<String, Instant> = HashMap::with_capacity(total as usize);
        let start = Instant::now();
        let mut behind = 0u64;
        for n in 0..total {
            let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
            let now = Instant::now();
            if due > now {
                tokio::time::sleep(due - now).await;
            } else if now - due > Duration::from_millis(50) {
                behind += 1;
            }
            let e = event(&s.app, n);
            let id = e.id.clone();
            write(&s.db, std::slice::from_ref(&e)).await?;
            committed.insert(id, Instant::now());
        }
        let offered = total as f64 / start.elapsed().as_secs_f64();
        until_all(&s.receiver, total as usize, Duration::from_secs(120)).await?;
        let arrived = s.receiver.arrived.lock().unwrap().clone();
        let mut h = hdrhistogram::Histogram::<u64>::new(3)?;
        for (id, at) in &committed {
            let lag = arrived[id].saturating_duration_since(*at);
            h.record(lag.as_micros() as u64)?;
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "run {run}: {total} events at {offered:.0}/s ({behind} written late): lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(0.5),
            ms(0.99),
            h.max() as f64 / 1000.0
        );
        p50s.push(ms(0.5));
        p99s.push(ms(0.99));
        maxes.push(h.max() as f64 / 1000.0);
    }
    println!(
        "first-attempt lag on {backend:?} at {rate} events/s, {runs} runs of {seconds}s: median p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        median(p50s.into_iter()),
        median(p99s.into_iter()),
        median(maxes.into_iter())
    );
    Ok(())
}
