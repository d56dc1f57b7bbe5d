//! The callback worker: delivers events to the apps' endpoints, at least once.
//!
//! It leases due deliveries in batches (each delivery is leased to one node at a time,
//! see `paybridge_store::callbacks::claim_due`), fairly: no app holds more than
//! [`CAPS`]`.per_app` attempts in flight, no failing endpoint more than
//! `per_failing_endpoint`, and apps take turns within a claim, so one app's hanging
//! endpoints leave the rest of the [`IN_FLIGHT`] slots to the others. It POSTs each,
//! signed per Standard Webhooks with the `standardwebhooks` crate, and hands
//! each result to a recorder that logs attempts and schedules the next ones (per
//! `paybridge_core::retry`) a batch per transaction, so a busy node pays one commit for
//! many attempts. An endpoint that
//! has been failing for `callback_disable_after` is disabled and the app told with a
//! `callback_endpoint.disabled` event. A node that dies mid-attempt leaves its lease to
//! run out (twice the attempt timeout); another (or the restarted) node then makes the
//! attempt again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use paybridge_core::retry::{self, Attempt};
use paybridge_store::callbacks::{self, AttemptRow, Caps, Due, Next, Outcome};
use paybridge_store::{now, now_ms};
use rand::Rng;
use secrecy::ExposeSecret;
use standardwebhooks::Webhook;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::service::callback_target::{self, PublicOnly};
use crate::service::callbacks::{signing_secrets, EndpointView};
use crate::service::ledger;
use crate::state::AppState;

/// Attempts in flight per node.
const IN_FLIGHT: usize = 256;
/// What one app, and one failing endpoint, may hold of them (across nodes). An app
/// alone gets 128 in flight, as many as a node had before the caps; an app whose
/// endpoints all hang leaves the other half to everyone else.
pub const CAPS: Caps = Caps {
    per_app: 128,
    per_failing_endpoint: 4,
};
/// How often to look for due deliveries when nothing wakes the worker.
const POLL: Duration = Duration::from_millis(250);
/// How much of a receiver's answer is kept in the attempt log.
const SNIPPET: usize = 256;

pub async fn run(state: AppState, stop: CancellationToken) {
    // A 2xx within the timeout is a success; a claimed delivery stays this node's for
    // twice as long, so an attempt is never made twice while one is in flight.
    let timeout = state.settings.callback_timeout;
    let lease = timeout * 2;
    let builder = || {
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            // A redirect is not a delivery: the app must give the final URL.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("paybridge-callbacks/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(IN_FLIGHT)
    };
    // Live apps' callbacks: resolved by a resolver that keeps public addresses only,
    // connected to those addresses, never through a proxy (which would resolve anew).
    let clients = builder().build().and_then(|test| {
        let live = builder()
            .no_proxy()
            .dns_resolver(Arc::new(PublicOnly))
            .build()?;
        Ok(Clients { test, live })
    });
    let client = match clients {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!(error = %e, "cannot build the callback HTTP client; callbacks are not delivered");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let (results, inbox) = mpsc::channel::<Outcome>(IN_FLIGHT * 4);
    let recorder = tokio::spawn(record(state.clone(), inbox));
    let wake = state.hub.deliveries.clone();
    let mut last_backlog = Instant::now() - Duration::from_secs(60);
    loop {
        if last_backlog.elapsed() >= Duration::from_secs(5) {
            last_backlog = Instant::now();
            if let Ok(n) = callbacks::backlog(&state.db).await {
                state.metrics.callback_backlog.set(n);
            }
        }
        let free = slots.available_permits();
        let mut claimed_all = false;
        let mut claimed_some = false;
        if free > 0 {
            let at = now_ms();
            let due = match callbacks::any_due(&state.db, at).await {
                Ok(false) => Ok(Vec::new()),
                Ok(true) => {
                    callbacks::claim_due(&state.db, at, lease.as_millis() as i64, free as i64, CAPS)
                        .await
                }
                Err(e) => Err(e),
            };
            match due {
                Ok(batch) => {
                    claimed_all = batch.len() == free;
                    claimed_some = !batch.is_empty();
                    for d in batch {
                        let Ok(slot) = slots.clone().acquire_owned().await else {
                            return;
                        };
                        let (state, client, results) =
                            (state.clone(), client.clone(), results.clone());
                        tokio::spawn(async move {
                            let outcome = attempt(&state, &client, d).await;
                            let _ = results.send(outcome).await;
                            drop(slot);
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot claim callback deliveries"),
            }
        }
        if claimed_all {
            // There may be more due: go on once a slot frees up.
            tokio::select! {
                _ = stop.cancelled() => break,
                s = slots.clone().acquire_owned() => drop(s),
            }
            continue;
        }
        if claimed_some {
            // A claim stops at the apps' caps: claim again at once, so that the
            // deliveries behind a capped app (the next apps' turns) are not kept waiting
            // for the next poll. A claim that finds nothing ends this.
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    // Let attempts in flight finish and be logged (their leases would cover them anyway).
    let _ = tokio::time::timeout(
        timeout + Duration::from_secs(1),
        slots.acquire_many(IN_FLIGHT as u32),
    )
    .await;
    drop(results);
    let _ = recorder.await;
}

/// Writes attempts' results as they come, as many per transaction as have arrived
/// meanwhile; disables endpoints that have been failing too long.
async fn record(state: AppState, mut inbox: mpsc::Receiver<Outcome>) {
    let mut batch = Vec::with_capacity(256);
    while inbox.recv_many(&mut batch, 256).await > 0 {
        match callbacks::record_attempts(&state.db, &batch).await {
            Ok(failing) => {
                let limit = state.settings.callback_disable_after.as_secs() as i64;
                for (endpoint, secs) in failing.into_iter().filter(|(_, s)| *s >= limit) {
                    if let Some(o) = batch.iter().find(|o| o.endpoint == endpoint) {
                        disable(&state, &o.attempt.app_id, &endpoint, secs).await;
                    }
                }
            }
            // The leases run out and the attempts are made again: at least once.
            Err(e) => {
                tracing::warn!(attempts = batch.len(), error = %e, "cannot record callback attempts")
            }
        }
        batch.clear();
    }
}

/// The body of a delivery: the event as `GET /v1/events` shows it.
fn payload(d: &Due) -> Vec<u8> {
    let data: serde_json::Value =
        serde_json::from_str(&d.event_data).unwrap_or(serde_json::Value::Null);
    serde_json::to_vec(&serde_json::json!({
        "id": d.event_id,
        "object": "event",
        "type": d.event_type,
        "created": d.event_created,
        "data": {"object": data},
    }))
    .unwrap_or_default()
}

/// The callback clients: any address for test apps, public ones for live apps.
struct Clients {
    test: reqwest::Client,
    live: reqwest::Client,
}

/// One attempt at one delivery, and what follows from it.
async fn attempt(state: &AppState, clients: &Clients, d: Due) -> Outcome {
    let live = d.environment == "live";
    let client = if live { &clients.live } else { &clients.test };
    let body = payload(&d);
    let ts = now();
    let secrets = signing_secrets(
        state,
        &d.app_id,
        &d.endpoint_id,
        &d.secret_sealed,
        d.previous_secret_sealed.as_deref(),
        d.previous_secret_expires,
    );
    let signature = secrets
        .iter()
        .filter_map(|s| Webhook::new(s.expose_secret()).ok())
        .filter_map(|w| w.sign(&d.event_id, ts, &body).ok())
        .collect::<Vec<_>>()
        .join(" ");
    let started_ms = now_ms();
    if d.attempts == 0 {
        let lag = (started_ms - d.created_ms).max(0) as f64 / 1000.0;
        state.metrics.callback_first_attempt_lag.observe(lag);
    }
    let started = Instant::now();
    let outcome = if signature.is_empty() {
        Err("the endpoint's secret cannot be opened with this master key".to_owned())
    } else if let Err(e) = if live {
        callback_target::check_delivery(&d.url)
    } else {
        Ok(())
    } {
        Err(e.to_string())
    } else {
        send(
            client,
            &d,
            ts,
            &signature,
            body,
            state.settings.callback_timeout,
        )
        .await
    };
    let latency_ms = started.elapsed().as_millis() as i64;
    let (status_code, snippet, error, result) = match outcome {
        Ok(r) if (200..300).contains(&r.status) => {
            (Some(r.status), r.snippet, None, Attempt::Delivered)
        }
        Ok(r) => {
            let retry_after = r
                .retry_after
                .as_deref()
                .and_then(|v| retry::parse_retry_after(v, ts));
            let err = format!("the endpoint answered {}", r.status);
            (
                Some(r.status),
                r.snippet,
                Some(err),
                Attempt::Failed { retry_after },
            )
        }
        Err(e) => (None, None, Some(e), Attempt::Failed { retry_after: None }),
    };
    let done = d.attempts as usize + 1;
    let jitter = rand::thread_rng().gen_range(-1.0..=1.0);
    let next = match retry::next(
        &state.settings.callback_retry_schedule,
        done,
        result,
        jitter,
    ) {
        retry::Next::Done => Next::Succeeded,
        retry::Next::RetryIn(wait) => Next::RetryAt(now_ms() + wait.as_millis() as i64),
        retry::Next::GiveUp => Next::Failed,
    };
    let outcome_label = match next {
        Next::Succeeded => "succeeded",
        Next::RetryAt(_) => "retrying",
        Next::Failed => "failed",
    };
    state.metrics.count_callback(outcome_label);
    let row = AttemptRow {
        delivery_id: d.id.clone(),
        app_id: d.app_id.clone(),
        attempted_ms: started_ms,
        status_code,
        latency_ms,
        response_snippet: snippet,
        error,
        node: state.settings.node.clone(),
    };
    Outcome {
        endpoint: d.endpoint_id,
        attempt: row,
        next,
    }
}

struct Answer {
    status: i64,
    snippet: Option<String>,
    retry_after: Option<String>,
}

async fn send(
    client: &reqwest::Client,
    d: &Due,
    ts: i64,
    signature: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Answer, String> {
    let res = client
        .post(&d.url)
        .header("content-type", "application/json")
        .header("webhook-id", &d.event_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| describe(e, timeout))?;
    let status = res.status().as_u16() as i64;
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let snippet = read_snippet(res).await;
    Ok(Answer {
        status,
        snippet,
        retry_after,
    })
}

/// The start of the answer's body, as text (it is only for people to read).
async fn read_snippet(mut res: reqwest::Response) -> Option<String> {
    let mut buf = Vec::new();
    while buf.len() < SNIPPET * 4 {
        match res.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let snippet: String = text.chars().take(SNIPPET).collect();
    (!snippet.is_empty()).then_some(snippet)
}

fn describe(e: reqwest::Error, timeout: Duration) -> String {
    if let Some(n) = callback_target::not_public(&e) {
        n.to_string()
    } else if e.is_timeout() {
        format!("no answer within {} s", timeout.as_secs())
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "the request failed".to_owned()
    }
}

/// Disables an endpoint that kept failing, and tells the app (in one transaction, by
/// whichever node gets there first).
async fn disable(state: &AppState, app: &str, endpoint: &str, failing_secs: i64) {
    let reason = format!("failing for {} hours", failing_secs / 3600);
    let result = async {
        let mut tx = state.db.begin().await?;
        if let Some(ep) = callbacks::disable_failing(&mut tx, endpoint, &reason).await? {
            ledger::emit(
                &mut tx,
                app,
                "callback_endpoint.disabled",
                &ep.id,
                (None, None, None),
                &EndpointView::of(&ep, None),
            )
            .await?;
            tracing::warn!(endpoint = %ep.id, app = %ep.app_id, %reason, "callback endpoint disabled");
        }
        tx.commit().await?;
        Ok::<_, paybridge_store::StoreError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(%endpoint, error = %e, "cannot disable a failing endpoint");
    }
}
