//! Crash safety: `kill -9` in the middle of sustained webhook ingest and callback
//! delivery, a restart on the same database, and then proof that every event
//! acknowledged with a 2xx was stored and applied, that no callback was lost, and that
//! nothing was applied twice. And `kill -9` while many checkouts are created at once
//! (on SQLite their transactions are group-committed): every checkout answered with a
//! 201 is there after the restart, with its order, payment and provider session.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paybridge_core::stripe::signature;
use serde_json::{json, Value};

use crate::common::{Backend, Receiver, Server, TestDb};
use crate::webhooks::{app_with_secret, event, intent, now, pending_intent, SECRET};

paybridge_testkit::on_both!(
    kill_9_during_ingest_and_delivery_loses_nothing_and_repeats_nothing,
    kill_9_during_concurrent_checkouts_loses_no_acknowledged_one,
);

const PAYMENTS: usize = 120;

/// Sends one signed event; true if it was acknowledged with a 2xx.
async fn deliver(http: &reqwest::Client, url: &str, body: &str) -> bool {
    let header = signature::sign(body.as_bytes(), SECRET.as_bytes(), now());
    matches!(
        http.post(url)
            .header("content-type", "application/json")
            .header("stripe-signature", header)
            .body(body.to_owned())
            .timeout(Duration::from_secs(5))
            .send()
            .await,
        Ok(r) if r.status().is_success()
    )
}

async fn kill_9_during_ingest_and_delivery_loses_nothing_and_repeats_nothing(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let mut s = Server::start_with(
        &db,
        &[
            (
                "PAYBRIDGE_CALLBACK_RETRY_SCHEDULE",
                "0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1",
            ),
            // Deliveries in flight when the process dies are retried after 2 × 2 s.
            ("PAYBRIDGE_CALLBACK_TIMEOUT", "2"),
        ],
    )
    .await;
    let a = app_with_secret(&s).await;
    let r = Receiver::start().await;
    let ep = s
        .post("/v1/callback_endpoints", &a.admin, json!({"url": r.url()}))
        .await;
    r.control(json!({"secrets": [ep.json["secret"]]})).await;

    let mut bodies = Vec::new();
    for i in 0..PAYMENTS {
        let (payment, pi) = pending_intent(&s, &a, 1000 + i as i64).await;
        let e = event(
            &format!("evt_crash_{i}"),
            "payment_intent.succeeded",
            now(),
            intent(&pi, &payment, "succeeded", 1000 + i as i64, json!({})),
        );
        bodies.push((e["id"].as_str().unwrap().to_owned(), e.to_string()));
    }

    // Eight senders, as Stripe's deliveries come in parallel; each notes what was acked.
    let url = s.url(&format!("/v1/webhooks/stripe/{}", a.id));
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let queue = Arc::new(Mutex::new(bodies.clone()));
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let (url, acked, queue) = (url.clone(), acked.clone(), queue.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                loop {
                    let next = queue.lock().unwrap().pop();
                    let Some((id, body)) = next else { return };
                    if deliver(&http, &url, &body).await {
                        acked.lock().unwrap().insert(id);
                    }
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            })
        })
        .collect();
    // Once about a third is in, the process dies mid-stream.
    while acked.lock().unwrap().len() < PAYMENTS / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.kill9();
    let at_kill = acked.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.restart().await;
    for t in senders {
        t.await.unwrap();
    }
    let acked_first = acked.lock().unwrap().clone();
    assert!(
        acked_first.len() < PAYMENTS,
        "some events must have been refused while down"
    );

    // Like Stripe, send again whatever was not acknowledged, and some that were.
    let http = reqwest::Client::new();
    for (id, body) in &bodies {
        if !acked_first.contains(id) {
            assert!(deliver(&http, &url, body).await, "{id} after the restart");
        }
    }
    for (_, body) in bodies.iter().step_by(7) {
        assert!(deliver(&http, &url, body).await);
    }

    // Every acknowledged event is stored and applied…
    let ids: Vec<String> = acked_first.iter().map(|i| format!("'{i}'")).collect();
    let stored = db
        .scalar(&format!(
            "SELECT COUNT(*) FROM provider_events WHERE outcome = 'processed' AND id IN ({})",
            ids.join(",")
        ))
        .await;
    assert_eq!(
        stored as usize,
        acked_first.len(),
        "acked before the crash: {}",
        acked_first.len()
    );
    let succeeded = db
        .scalar("SELECT COUNT(*) FROM payments WHERE status = 'succeeded'")
        .await;
    assert_eq!(succeeded as usize, PAYMENTS);
    // …and nothing was applied twice: one event per change, however often it came.
    let twice = db
        .scalar("SELECT COUNT(*) FROM (SELECT object_id, type FROM events GROUP BY object_id, type HAVING COUNT(*) > 1) t")
        .await;
    assert_eq!(twice, 0, "an event of ours was written twice");
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM events WHERE type = 'payment.succeeded'")
            .await as usize,
        PAYMENTS
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM events WHERE type = 'order.paid'")
            .await as usize,
        PAYMENTS
    );
    let received_twice = db
        .scalar("SELECT COUNT(*) FROM provider_events WHERE received_count > 1")
        .await;
    assert!(received_twice > 0, "duplicates were sent and counted");

    // No callback is lost: every event of ours reaches the receiver, verified.
    let ours: HashSet<String> = {
        let mut all = HashSet::new();
        let mut after = String::new();
        loop {
            let page = s
                .get(&format!("/v1/events?limit=100{after}"), &a.admin)
                .await;
            let data: Vec<Value> = page.json["data"].as_array().unwrap().clone();
            all.extend(data.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
            if page.json["has_more"] != true {
                break all;
            }
            after = format!(
                "&starting_after={}",
                data.last().unwrap()["id"].as_str().unwrap()
            );
        }
    };
    let got = r
        .until(60, |g| {
            let ok: HashSet<&str> = g
                .iter()
                .filter(|x| x["status"] == 200)
                .filter_map(|x| x["webhook_id"].as_str())
                .collect();
            ours.iter().all(|e| ok.contains(e.as_str()))
        })
        .await;
    assert!(got.iter().all(|x| x["verified"] == true));
    let pending = s
        .until("/v1/deliveries?status=pending", &a.admin, |j| {
            j["data"].as_array().is_some_and(|d| d.is_empty())
        })
        .await;
    assert_eq!(pending["data"].as_array().unwrap().len(), 0);
    eprintln!(
        "killed after {at_kill} acks; {} acked before the restart; {} callbacks for {} events",
        acked_first.len(),
        got.len(),
        ours.len()
    );
}

/// Sixteen callers create checkouts at once (three write transactions each, grouped on
/// SQLite) until the process is killed mid-stream; after the restart every checkout
/// that was answered 201 is stored whole: its provider session recorded, its payment
/// pending on it, its order there.
async fn kill_9_during_concurrent_checkouts_loses_no_acknowledged_one(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let mut s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let product = s.product(&a.admin, "Shirt", 2500, "usd").await;
    let url = s.url("/v1/checkout/sessions");
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let (url, acked, stop, key, product) = (
                url.clone(),
                acked.clone(),
                stop.clone(),
                a.publishable.clone(),
                product.clone(),
            );
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let r = http
                        .post(&url)
                        .bearer_auth(&key)
                        .json(&json!({
                            "line_items": [{"product": product, "quantity": 1}],
                            "success_url": "https://shop.example/ok",
                            "cancel_url": "https://shop.example/cart",
                        }))
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    let Ok(r) = r else {
                        continue;
                    };
                    if r.status().as_u16() != 201 {
                        continue;
                    }
                    if let Ok(v) = r.json::<Value>().await {
                        acked
                            .lock()
                            .unwrap()
                            .push(v["id"].as_str().unwrap_or_default().to_owned());
                    }
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 60 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    s.kill9();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for c in callers {
        c.await.unwrap();
    }
    s.restart().await;
    let acked = acked.lock().unwrap().clone();
    for id in &acked {
        let c = s
            .get(&format!("/v1/checkout/sessions/{id}"), &a.server)
            .await;
        assert_eq!(
            c.status.as_u16(),
            200,
            "checkout {id} answered 201: {}",
            c.body
        );
        assert!(
            c.json["url"].as_str().is_some_and(|u| !u.is_empty()),
            "checkout {id} has its provider page: {}",
            c.json
        );
        let payment = c.json["payment"].as_str().unwrap_or_default();
        let p = s.get(&format!("/v1/payments/{payment}"), &a.server).await;
        assert_eq!(p.status.as_u16(), 200, "{}", p.body);
        assert_eq!(p.json["status"], "pending", "{}", p.json);
        let order = c.json["order"].as_str().unwrap_or_default();
        let o = s.get(&format!("/v1/orders/{order}"), &a.server).await;
        assert_eq!(o.status.as_u16(), 200, "{}", o.body);
    }
    eprintln!(
        "{} checkouts answered 201 before the kill, all stored",
        acked.len()
    );
}
