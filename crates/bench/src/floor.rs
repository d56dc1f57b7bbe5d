//! The floor receiver: the least a webhook receiver with paybridge's promise can do,
//! run as a process of its own (`paybridge-bench floor-serve`, started by the
//! `webhooks` benchmark) so that its CPU is measured apart from the load generator.
//!
//! It verifies the `Stripe-Signature` (the same function paybridge uses), reads the
//! event's id, and stores the raw event alone in one table, once per id, with naive
//! group commit: one writer thread with one `rusqlite` connection (`synchronous=FULL`,
//! WAL) takes every event that has queued, inserts each with a cached prepared
//! statement, commits, and only then answers each request. No payments, no state
//! machine, no outbox: paybridge does strictly more per event, so paybridge / floor
//! says how close its writer is to what this machine's disk and CPU allow.

use std::sync::mpsc as std_mpsc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use paybridge_core::stripe::signature;
use serde::Deserialize;
use tokio::sync::oneshot;

struct Job {
    id: String,
    raw: Bytes,
    done: oneshot::Sender<bool>,
}

#[derive(Clone)]
struct Floor {
    secret: std::sync::Arc<Vec<u8>>,
    queue: std_mpsc::SyncSender<Job>,
}

#[derive(Deserialize)]
struct EventId<'a> {
    #[serde(borrow)]
    id: &'a str,
}

const MAX_BATCH: usize = 512;

/// Runs the floor receiver on `127.0.0.1:0`, printing `listening on http://…`.
pub async fn serve(db: &str, secret: &str) -> anyhow::Result<()> {
    let (queue, rx) = std_mpsc::sync_channel::<Job>(MAX_BATCH * 8);
    let path = db.to_owned();
    let conn = rusqlite::Connection::open(&path)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, received INTEGER NOT NULL, body BLOB NOT NULL) WITHOUT ROWID;",
    )?;
    std::thread::Builder::new()
        .name("floor-writer".into())
        .spawn(move || writer(conn, rx))?;
    let floor = Floor {
        secret: std::sync::Arc::new(secret.as_bytes().to_vec()),
        queue,
    };
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(floor);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn receive(
    State(f): State<Floor>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let Some(header) = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return (StatusCode::BAD_REQUEST, "{\"error\":\"signature_missing\"}");
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if signature::verify(header, &body, &[f.secret.as_slice()], now).is_err() {
        return (StatusCode::BAD_REQUEST, "{\"error\":\"signature_invalid\"}");
    }
    let Ok(ev) = serde_json::from_slice::<EventId>(&body) else {
        return (StatusCode::BAD_REQUEST, "{\"error\":\"event_invalid\"}");
    };
    let id = ev.id.to_owned();
    let (done, answer) = oneshot::channel();
    let queue = f.queue.clone();
    let job = Job {
        id,
        raw: body,
        done,
    };
    // The queue is bounded: a full one blocks this task's thread briefly, which is the
    // back-pressure a naive receiver has.
    if tokio::task::block_in_place(|| queue.send(job)).is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "{\"error\":\"stopped\"}");
    }
    match answer.await {
        Ok(true) => (StatusCode::OK, "{\"received\":true}"),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"error\":\"not_stored\"}",
        ),
    }
}

fn writer(mut conn: rusqlite::Connection, rx: std_mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let stored = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO events (id, received, body) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO NOTHING",
                )?;
                for j in &batch {
                    insert.execute(rusqlite::params![j.id, now, &j.raw[..]])?;
                }
            }
            tx.commit()
        })();
        if let Err(e) = &stored {
            eprintln!("floor: a batch failed: {e}");
        }
        for j in batch {
            let _ = j.done.send(stored.is_ok());
        }
    }
}
