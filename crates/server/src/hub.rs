//! The event hub: one per process, it follows the `events` table and hands each new
//! event to the live streams open on this node, and wakes the callback worker.
//!
//! Every node follows the shared table itself, so an event written by any node reaches
//! the streams of every node. On PostgreSQL, `LISTEN paybridge_events` (notified by
//! each transaction that appends events) wakes the hub at once; otherwise, and as a
//! fallback, it looks every 50 ms.
//!
//! Order: on PostgreSQL a `seq` is taken at insert but becomes visible at commit, so
//! a later `seq` can appear before an earlier one. The hub publishes in `seq` order and
//! holds events behind such a gap until it fills — or, if its transaction rolled back,
//! for at most [`GAP_WAIT`]. A stream therefore never sees `seq`s go backwards, and a
//! resume from the last event it saw misses nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use paybridge_store::events::{self, EventRow};
use paybridge_store::Backend;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

const POLL: Duration = Duration::from_millis(50);
const GAP_WAIT: Duration = Duration::from_secs(1);
const PAGE: i64 = 500;

pub struct Hub {
    live: broadcast::Sender<Arc<EventRow>>,
    /// Wakes the callback worker: there are new events, so perhaps new deliveries.
    pub deliveries: Arc<Notify>,
    /// The highest `seq` published so far (streams start their replay from here).
    published: std::sync::atomic::AtomicI64,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub {
            live: broadcast::channel(4096).0,
            deliveries: Arc::new(Notify::new()),
            published: std::sync::atomic::AtomicI64::new(0),
        }
    }
}

impl Hub {
    /// New events from now on, in `seq` order. A receiver that falls more than the
    /// channel's capacity behind gets `Lagged` and must catch up from the table.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EventRow>> {
        self.live.subscribe()
    }

    pub fn published(&self) -> i64 {
        self.published.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Follows the table until `stop`.
pub async fn run(state: AppState, stop: CancellationToken) {
    let wake = Arc::new(Notify::new());
    if state.db.backend == Backend::Postgres && !state.settings.database_url.is_empty() {
        tokio::spawn(listen(
            state.settings.database_url.clone(),
            wake.clone(),
            stop.clone(),
        ));
    }
    let hub = &state.hub;
    let mut next = loop {
        match events::max_seq(&state.db).await {
            Ok(m) => break m + 1,
            Err(e) => {
                tracing::warn!(error = %e, "event hub cannot read the events table; retrying")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    };
    hub.published
        .store(next - 1, std::sync::atomic::Ordering::Release);
    let mut held: BTreeMap<i64, Arc<EventRow>> = BTreeMap::new();
    let mut gap_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
        if hub.live.receiver_count() == 0 && held.is_empty() {
            // Nobody is listening here: only note how far the table goes.
            if let Ok(m) = events::max_seq(&state.db).await {
                if m >= next {
                    hub.deliveries.notify_one();
                    next = m + 1;
                    hub.published.store(m, std::sync::atomic::Ordering::Release);
                }
            }
            continue;
        }
        loop {
            let rows = match events::tail(&state.db, next - 1, PAGE).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "event hub cannot read new events");
                    break;
                }
            };
            let full = rows.len() as i64 == PAGE;
            if !rows.is_empty() {
                hub.deliveries.notify_one();
            }
            for r in rows {
                held.insert(r.seq, Arc::new(r));
            }
            while let Some((&seq, _)) = held.first_key_value() {
                if seq != next {
                    let since = *gap_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < GAP_WAIT {
                        break;
                    }
                    // The missing `seq`s were rolled back (or are very late): go on.
                    next = seq;
                }
                gap_since = None;
                if let Some((_, e)) = held.pop_first() {
                    let _ = hub.live.send(e);
                }
                hub.published
                    .store(next, std::sync::atomic::Ordering::Release);
                next += 1;
            }
            if !full || !held.is_empty() {
                break;
            }
        }
    }
}

/// `LISTEN paybridge_events`; each notification wakes the hub. Reconnects if the
/// connection drops (the hub's polling covers the gap).
async fn listen(url: String, wake: Arc<Notify>, stop: CancellationToken) {
    loop {
        match sqlx::postgres::PgListener::connect(&url).await {
            Ok(mut l) => {
                if let Err(e) = l.listen(events::CHANNEL).await {
                    tracing::warn!(error = %e, "LISTEN failed");
                } else {
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            n = l.recv() => match n {
                                Ok(_) => wake.notify_one(),
                                Err(e) => {
                                    tracing::warn!(error = %e, "event notifications lost; reconnecting");
                                    break;
                                }
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot LISTEN for events; polling only"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
