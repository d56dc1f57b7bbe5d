//! Webhook ingest and checkout creation under load.

use std::sync::Arc;
use std::time::Duration;

use paybridge_core::stripe::signature;
use paybridge_testkit::Backend;
use serde_json::json;

use crate::cpu;
use crate::load::{self, median, Stats};
use crate::server::BenchServer;

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

pub async fn run(
    backend: Backend,
    connections: usize,
    dur: Duration,
    runs: usize,
    payments: usize,
) -> anyhow::Result<()> {
    let mut results = Vec::new();
    let mut usages = Vec::new();
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
        let targets = Arc::new(targets);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle_before = s.rss_mib().unwrap_or(f64::NAN);
        let url = s.url(&format!("/v1/webhooks/stripe/{}", app.id));
        let run_tag = format!("{run}{}", now());
        let before = cpu::Sample::take(s.pid());
        let stats = load::run(connections, dur, move |c, n| {
            // Each event is distinct; they cycle through the payments and through the
            // kinds of event a payment's life brings.
            let (payment, pi) = &targets[(n as usize) % targets.len()];
            let (kind, status) = match n % 3 {
                0 => ("payment_intent.processing", "processing"),
                1 => ("payment_intent.succeeded", "succeeded"),
                _ => ("payment_intent.requires_action", "requires_action"),
            };
            let body = json!({
                "id": format!("evt_{run_tag}_{n}"), "object": "event", "type": kind, "created": now(), "livemode": false,
                "data": {"object": {"id": pi, "object": "payment_intent", "status": status, "amount": 1000,
                    "amount_received": if status == "succeeded" { 1000 } else { 0 }, "currency": "usd",
                    "metadata": {"pb_payment": payment}}}
            })
            .to_string();
            let header = signature::sign(body.as_bytes(), SECRET.as_bytes(), now());
            c.post(&url)
                .header("content-type", "application/json")
                .header("stripe-signature", header)
                .body(body)
        })
        .await;
        let usage = before.until(&cpu::Sample::take(s.pid()), stats.ok);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle_after = s.rss_mib().unwrap_or(f64::NAN);
        println!(
            "run {run}: {stats}; {usage}; server RSS idle {idle_before:.1} MiB before the load, {idle_after:.1} MiB 2 s after it"
        );
        usages.push(usage);
        results.push(stats);
    }
    report(
        "webhook ingest (events)",
        backend,
        connections,
        dur,
        &results,
    );
    println!(
        "CPU per event (median): server {:.0} µs, load generator {:.0} µs; machine busy {:.0} %, stolen {:.0} %",
        median(usages.iter().map(|u| u.server_us)),
        median(usages.iter().map(|u| u.generator_us)),
        median(usages.iter().map(|u| u.busy * 100.0)),
        median(usages.iter().map(|u| u.steal * 100.0)),
    );
    Ok(())
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
        let stats = load::run(connections, dur, move |c, _| {
            c.post(&url).bearer_auth(&key).json(&json!({
                "line_items": [{"product": product, "quantity": 1}],
                "success_url": "https://shop.example/ok", "cancel_url": "https://shop.example/cart"
            }))
        })
        .await;
        println!("run {run}: {stats}");
        results.push(stats);
    }
    report(
        "create checkout (requests)",
        backend,
        connections,
        dur,
        &results,
    );
    Ok(())
}
