//! Webhooks in: a verified event is stored once per (app, event id) and applied in the
//! same transaction, before the 200 that tells the provider it is safe. A repeated
//! delivery is counted and acknowledged without a second effect, also when copies
//! arrive at once (the primary key decides which one applies). Events are committed in
//! groups (`Ingestor`), each acknowledged only once its group is durable.

use std::collections::HashMap;
use std::sync::Arc;

use paybridge_core::stripe::event::Event;
use paybridge_store::provider_events::{self, ProviderEventRow};
use paybridge_store::{now, Db, StoreError};
use tokio::sync::{mpsc, oneshot};

use super::ledger::{self, Outcome, UnitOfWork};
use crate::state::AppState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// First delivery: stored, and applied with this outcome.
    Applied(Outcome),
    /// A repeat of an event already stored.
    Duplicate,
}

struct Job {
    app: String,
    event: Event,
    raw: String,
    reply: oneshot::Sender<Result<Ingested, String>>,
}

impl Job {
    fn key(&self) -> (&str, &str) {
        (self.app.as_str(), self.event.id.as_str())
    }
}

/// Group commit for webhooks: events queue here and a few writer tasks take all that
/// has queued, apply each inside its own savepoint of one transaction, commit once (one
/// fsync for the lot), and only then answer each request. While a batch commits, the
/// next one gathers, so batches grow with the load and an idle server answers at once.
///
/// Each lane has a queue of its own, and an event goes to the lane its payment intent
/// hashes to (`lane_of`): one payment's events, whether about the intent, its charge,
/// a refund or its checkout session, are applied by one lane in the order they
/// arrived, and two lanes do not wait for each other's row locks on it. With one shared
/// queue the PostgreSQL lanes took events at random and spent their time waiting for
/// each other's locks (BENCHMARKS.md).
#[derive(Clone)]
pub struct Ingestor {
    lanes: Arc<[mpsc::Sender<Job>]>,
}

/// Most events in one transaction.
const MAX_BATCH: usize = 512;

impl Ingestor {
    /// `lanes` writer tasks: one on SQLite (it has one writer), more on PostgreSQL.
    pub fn start(db: Db, lanes: usize) -> Ingestor {
        let queues: Vec<_> = (0..lanes.max(1))
            .map(|_| {
                let (queue, rx) = mpsc::channel::<Job>(MAX_BATCH * 8);
                spawn_lane(db.clone(), rx);
                queue
            })
            .collect();
        Ingestor {
            lanes: queues.into(),
        }
    }

    /// Stores and applies an event; returns once it is durable. `raw` is stored as
    /// given: the caller has cut the client secret out of it
    /// (`paybridge_core::stripe::redact`).
    pub async fn ingest(&self, app: &str, event: Event, raw: String) -> Result<Ingested, String> {
        let (reply, answer) = oneshot::channel();
        let lane = &self.lanes[lane_of(app, &event, self.lanes.len())];
        lane.send(Job {
            app: app.to_owned(),
            event,
            raw,
            reply,
        })
        .await
        .map_err(|_| "the ingest queue is closed".to_owned())?;
        answer
            .await
            .map_err(|_| "the ingest writer stopped".to_owned())?
    }
}

/// What a PostgreSQL lane's connection is called in `pg_stat_activity`.
pub const LANE_CONNECTION: &str = "paybridge webhook lane";

/// A writer task: waits for one event, then takes all that has queued (at most
/// MAX_BATCH) and commits it as one batch; ends when the queue is closed.
///
/// On PostgreSQL it writes through a connection of its own, opened on the runtime it
/// runs on (`Db::with_own_connection`).
async fn lane(db: Db, mut rx: mpsc::Receiver<Job>) {
    let db = db.with_own_connection(LANE_CONNECTION);
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        commit_batch(&db, std::mem::take(&mut batch)).await;
    }
    db.close().await;
}

/// Starts a lane on a thread and runtime of its own, so that it runs as soon as a
/// request hands it an event or its database answers. On the shared runtime every
/// wake-up queued behind the HTTP tasks first: SQLite's one writer is the whole ingest
/// path's bottleneck, and a PostgreSQL lane waits for a round trip four or five times
/// per batch (1.3× the events per second on PostgreSQL, BENCHMARKS.md). If the thread
/// or its runtime cannot be started, the lane shares the server's runtime (slower, but
/// working).
///
/// The runtime is built on the new thread: one dropped here, on a thread of the
/// server's runtime, would panic.
fn spawn_lane(db: Db, rx: mpsc::Receiver<Job>) {
    let shared = tokio::runtime::Handle::current();
    // The lane's state is handed over through a slot, so that it is still here to run
    // on the shared runtime if the thread cannot be started.
    let slot = Arc::new(std::sync::Mutex::new(Some((db, rx))));
    let take = |slot: &std::sync::Mutex<Option<(Db, mpsc::Receiver<Job>)>>| {
        slot.lock().ok().and_then(|mut s| s.take())
    };
    let theirs = slot.clone();
    let started = std::thread::Builder::new()
        .name("pb-ingest".into())
        .spawn(move || {
            let Some((db, rx)) = take(&theirs) else {
                return;
            };
            // The lane's thread runs nothing else: on SQLite its `BEGIN` and its
            // commit's fsync run here rather than on the writer's disk and fsync
            // threads (no wake-up of another thread and back, BENCHMARKS.md).
            paybridge_store::this_thread_may_wait_for_disk();
            match own_runtime() {
                Some(rt) => rt.block_on(lane(db, rx)),
                None => drop(shared.spawn(lane(db, rx))),
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "no thread for the ingest lane; it shares the server's runtime");
        if let Some((db, rx)) = take(&slot) {
            tokio::spawn(lane(db, rx));
        }
    }
}

/// The lane an event goes to, of `lanes`: by its app and the payment intent it is
/// about (a charge's, refund's, dispute's or checkout session's too), else its checkout
/// session, our payment, its object, or its own id.
///
/// Keyed by the payment intent, not the event's object, because one payment's events
/// are about several objects (`pi_`, `ch_`, `re_`, `cs_`, `dp_`) that Stripe sends
/// together, and they lock the same payment row.
fn lane_of(app: &str, event: &Event, lanes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    if lanes <= 1 {
        return 0;
    }
    let refs = paybridge_core::stripe::event::read(event).map(|r| r.refs);
    let about = refs
        .as_ref()
        .and_then(|r| {
            r.payment_intent
                .as_deref()
                .or(r.checkout_session.as_deref())
                .or(r.payment.as_deref())
        })
        .or_else(|| event.object.get("id").and_then(|v| v.as_str()))
        .unwrap_or(&event.id);
    // SipHash with fixed keys: the same payment goes to the same lane for the life of
    // the process (a `RandomState` per call would scatter it).
    let mut h = std::hash::DefaultHasher::new();
    (app, about).hash(&mut h);
    (h.finish() % lanes as u64) as usize
}

/// A current-thread runtime for an ingest lane, or none (then the lane shares the
/// server's runtime, slower but working).
fn own_runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .inspect_err(|e| tracing::warn!(error = %e, "the ingest lane shares the server's runtime"))
        .ok()
}

async fn commit_batch(db: &Db, batch: Vec<Job>) {
    match apply_batch(db, &batch).await {
        Ok(results) => {
            for (job, r) in batch.into_iter().zip(results) {
                let _ = job.reply.send(Ok(r));
            }
        }
        // A batch that failed as a whole is tried again one event at a time, so that
        // one bad event cannot fail the others. A lock conflict between nodes fails a
        // batch, and so does a connection that broke (PostgreSQL restarted): the
        // next try opens a new one, so even a batch of one is tried again.
        Err(e) => {
            tracing::warn!(error = %e, events = batch.len(), "a batch of webhook events failed; applying them one by one");
            for job in batch {
                let r = apply_batch(db, std::slice::from_ref(&job)).await;
                let _ = job
                    .reply
                    .send(r.map(|mut v| v.remove(0)).map_err(|e| e.to_string()));
            }
        }
    }
}

/// Applies and stores a batch of events in one transaction (see [`try_batch`]).
///
/// The first try does not look for events stored before: nearly every event is new,
/// and storing the new ones finds a repeat anyway (its insert stores nothing). Only a
/// batch that holds a repeat, of an event stored before or by another node meanwhile,
/// is rolled back and tried again, this time finding its duplicates first. On
/// PostgreSQL that is one statement and one round trip fewer for every batch without a
/// repeat (BENCHMARKS.md). A first try that fails is tried again looking first too: a
/// repeat applied again might be what failed, and it must come out as a duplicate.
/// Up to three tries look first, each after another node stored one of the events.
async fn apply_batch(db: &Db, batch: &[Job]) -> Result<Vec<Ingested>, StoreError> {
    match try_batch(db, batch, false).await {
        Ok(Some(results)) => return Ok(results),
        Ok(None) => {}
        Err(e) => {
            tracing::debug!(error = %e, events = batch.len(), "a batch's first try failed; trying again, looking for repeats first");
        }
    }
    for _ in 0..3 {
        if let Some(results) = try_batch(db, batch, true).await? {
            return Ok(results);
        }
    }
    Err(StoreError::Conflict(
        "another node stored the same events, three tries in a row".into(),
    ))
}

/// One transaction: finds the batch's events stored before (duplicates) if
/// `look_first`, loads the rows the new ones are about in one go, applies them in
/// arrival order, writes what changed, stores each new event with its outcome, and
/// counts the duplicates' deliveries. `None` (the transaction rolled back) if one of
/// the events it took for new was stored already: before, when it did not look first,
/// or by another node meanwhile.
async fn try_batch(
    db: &Db,
    batch: &[Job],
    look_first: bool,
) -> Result<Option<Vec<Ingested>>, StoreError> {
    let ts = now();
    // Copies of one event within the batch: the first stands for all.
    let mut first: HashMap<(&str, &str), usize> = HashMap::new();
    let mut copies: HashMap<usize, i64> = HashMap::new();
    for (i, j) in batch.iter().enumerate() {
        let at = *first.entry(j.key()).or_insert(i);
        *copies.entry(at).or_insert(0) += 1;
    }
    let mut rows: Vec<ProviderEventRow> = copies
        .iter()
        .map(|(&i, &n)| {
            let j = &batch[i];
            ProviderEventRow {
                app_id: j.app.clone(),
                id: j.event.id.clone(),
                kind: j.event.kind.clone(),
                created: j.event.created,
                livemode: i64::from(j.event.livemode),
                object_id: j
                    .event
                    .object
                    .get("id")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned),
                payload: j.raw.clone(),
                received_count: n,
                first_received: ts,
                last_received: ts,
                outcome: "received".into(),
                detail: None,
                attempts: 0,
                processed_at: None,
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.app_id, &a.id).cmp(&(&b.app_id, &b.id)));
    let mut tx = db.begin().await?;
    let (known, mut new): (Vec<ProviderEventRow>, Vec<ProviderEventRow>) = if look_first {
        let stored = provider_events::stored_among(&mut tx, &rows).await?;
        rows.into_iter()
            .partition(|r| stored.contains(&(r.app_id.clone(), r.id.clone())))
    } else {
        (Vec::new(), rows)
    };
    // Each new event's row, by its key: the event's first copy in the batch takes it
    // and is applied; later copies, and events stored before, are duplicates.
    let mut row_of: HashMap<(&str, &str), usize> = new
        .iter()
        .enumerate()
        .map(|(n, r)| ((r.app_id.as_str(), r.id.as_str()), n))
        .collect();
    let mut uow = UnitOfWork::new();
    for of_app in new.chunk_by(|a, b| a.app_id == b.app_id) {
        let app = of_app[0].app_id.as_str();
        let refs: Vec<_> = batch
            .iter()
            .filter(|j| j.app == app && row_of.contains_key(&j.key()))
            .filter_map(|j| paybridge_core::stripe::event::read(&j.event).map(|r| r.refs))
            .collect();
        uow.load_for(&mut tx, app, &refs).await?;
    }
    let mut results = vec![Ingested::Duplicate; batch.len()];
    let mut outcomes: Vec<(usize, &'static str, String)> = Vec::new();
    for (i, j) in batch.iter().enumerate() {
        let Some(n) = row_of.remove(&j.key()) else {
            continue;
        };
        let outcome = uow.apply_event(&mut tx, &j.app, &j.event).await?;
        let (name, detail) = outcome.parts();
        outcomes.push((n, name, detail.to_owned()));
        results[i] = Ingested::Applied(outcome);
    }
    uow.flush(&mut tx).await?;
    // The new events are stored only now, each with its outcome, so each row is
    // written once (not inserted as `received`, then updated). If one of them was
    // stored already (before, or by another node meanwhile: the insert waited for that
    // node's commit), this work is dropped and the batch tried again.
    for (n, name, detail) in outcomes {
        let r = &mut new[n];
        r.outcome = name.to_owned();
        r.detail = Some(detail);
        r.attempts = 1;
        r.processed_at = Some(ts);
    }
    if provider_events::store_new(&mut tx, &new).await? < new.len() {
        tx.rollback().await?;
        return Ok(None);
    }
    // The duplicates' deliveries are counted last too: on PostgreSQL every write to
    // `provider_events` then comes after the payments' locks, inserts before updates,
    // each in key order, so two nodes' batches cannot wait for each other in a cycle
    // (a duplicate's row updated before the locks could be what another node's insert
    // waits for while it holds the payment this batch waits for).
    for r in &known {
        provider_events::count_delivery(&mut tx, &r.app_id, &r.id, r.received_count, ts).await?;
    }
    tx.commit().await?;
    ledger::count_anomalies(uow.anomalies());
    Ok(Some(results))
}

/// Applies stored events that were waiting for their object (or failed) and are due
/// for another try (`provider_events::retryable` backs off per event); gives up on
/// those older than a day. Returns how many were applied now.
///
/// The due events are tried in one transaction (one commit and fsync for up to 200,
/// where each had its own); if that fails as a whole, they are tried one by one, so
/// one bad event cannot hold back the others.
pub async fn retry_pending(state: &AppState) -> Result<usize, StoreError> {
    let day_ago = now() - 24 * 3600;
    provider_events::expire_pending(&state.db, day_ago).await?;
    let rows = provider_events::retryable(&state.db, day_ago, now(), 200).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    match retry_rows(state, &rows).await {
        Ok(n) => Ok(n),
        Err(e) if rows.len() > 1 => {
            tracing::warn!(error = %e, events = rows.len(), "retrying waiting provider events together failed; one by one");
            let mut applied = 0;
            for row in &rows {
                applied += retry_rows(state, std::slice::from_ref(row)).await?;
            }
            Ok(applied)
        }
        Err(e) => Err(e),
    }
}

async fn retry_rows(state: &AppState, rows: &[ProviderEventRow]) -> Result<usize, StoreError> {
    let (mut applied, mut anomalies) = (0, Vec::new());
    let mut tx = state.db.begin().await?;
    for row in rows {
        let Ok(ev) = paybridge_core::stripe::event::parse(row.payload.as_bytes()) else {
            continue;
        };
        let current = provider_events::get(&mut *tx, &row.app_id, &row.id).await?;
        if !matches!(current.outcome.as_str(), "pending" | "failed") {
            continue;
        }
        let (outcome, found) = ledger::apply_event(&mut tx, &row.app_id, &ev).await?;
        anomalies.extend(found);
        let (name, detail) = outcome.parts();
        provider_events::set_outcome(&mut tx, &row.app_id, &row.id, name, Some(detail), now())
            .await?;
        if name == "processed" {
            applied += 1;
        }
    }
    tx.commit().await?;
    ledger::count_anomalies(&anomalies);
    Ok(applied)
}

#[cfg(test)]
#[path = "webhooks_tests.rs"]
mod tests;
