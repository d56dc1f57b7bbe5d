//! The event hub: one per process, it follows the `events` table and hands each new
//! event to the live streams open on this node, and wakes the callback worker.
//!
//! Every node follows the shared table itself, so an event written by any node reaches
//! the streams of every node. On PostgreSQL, `LISTEN paybridge_events` (notified by
//! each transaction that appends events) wakes the hub at once; otherwise, and as a
//! fallback, it looks every 50 ms.
//!
//! Order: on PostgreSQL a `seq` is taken at insert but becomes visible at commit, so
//! a later `seq` can appear before an earlier one. The hub publishes only up to the
//! table's settled horizon ([`events::horizon`]): a `seq` below it is committed or
//! never will be, because every transaction that could still hold one has ended. A
//! stream therefore never sees `seq`s go backwards, and a resume from the last event
//! it saw misses nothing, however long a transaction takes to commit. (An earlier
//! design waited a fixed second for a gap to fill, and lost an event whose transaction
//! took longer.) On SQLite transactions commit in `seq` order: every horizon is settled.
//!
//! The hub starts at its first settled horizon and says when it follows the table
//! ([`Hub::published_when_following`]): a stream takes its mark only then.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use paybridge_store::events::{self, EventRow, Horizon};
use paybridge_store::Backend;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

const POLL: Duration = Duration::from_millis(50);
const PAGE: i64 = 500;
/// Horizons seen and not yet settled (one per look while transactions run long).
const MAX_PENDING: usize = 1024;

pub struct Hub {
    live: broadcast::Sender<Arc<EventRow>>,
    /// Wakes the callback worker: there are new events, so perhaps new deliveries.
    pub deliveries: Arc<Notify>,
    /// The highest `seq` published so far (streams start their replay from here).
    published: std::sync::atomic::AtomicI64,
    /// Set once the hub follows the table: `published` means something only then.
    following: tokio::sync::watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub {
            live: broadcast::channel(4096).0,
            deliveries: Arc::new(Notify::new()),
            published: std::sync::atomic::AtomicI64::new(0),
            following: tokio::sync::watch::channel(false).0,
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

    /// [`Hub::published`], once the hub follows the table. Until then the mark is 0
    /// and the hub sends nothing: a stream that started from it would skip every event
    /// committed before the hub's first settled horizon, which the hub then never sends
    /// (a stream opened in a new server's first moments lost its order's payment).
    pub async fn published_when_following(&self) -> i64 {
        let mut following = self.following.subscribe();
        // The sender lives as long as the hub: `wait_for` cannot fail here.
        let _ = following.wait_for(|f| *f).await;
        self.published()
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
    let mut pending: VecDeque<Horizon> = VecDeque::new();
    // Start from the first settled horizon: what is below it is history.
    let mut published = loop {
        match events::horizon(&state.db).await {
            Ok(h) => {
                note(&mut pending, &h);
                if let Some(settled) = settle(&mut pending, &h) {
                    break settled;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "event hub cannot read the events table; retrying")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
    };
    // Streams replay up to `published`: only what is durable (see below).
    while let Err(e) = state.db.durable().await {
        tracing::warn!(error = %e, "event hub cannot tell the events are durable");
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    hub.published
        .store(published, std::sync::atomic::Ordering::Release);
    hub.following.send_replace(true);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
        let h = match events::horizon(&state.db).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "event hub cannot read new events");
                continue;
            }
        };
        note(&mut pending, &h);
        let Some(settled) = settle(&mut pending, &h).filter(|s| *s > published) else {
            continue;
        };
        // Nothing is published before it is durable: on SQLite a reader may see a
        // commit one fsync early (commit pipelining); this waits for that fsync.
        if let Err(e) = state.db.durable().await {
            tracing::warn!(error = %e, "event hub cannot tell new events are durable");
            continue;
        }
        hub.deliveries.notify_one();
        if hub.live.receiver_count() == 0 {
            // Nobody is listening here: only note how far the table goes.
            hub.published
                .store(settled, std::sync::atomic::Ordering::Release);
            if hub.live.receiver_count() == 0 {
                published = settled;
                continue;
            }
            // A stream subscribed meanwhile and may have read the mark before it moved:
            // it is sent what lies between (one that read the new mark skips it).
        }
        while published < settled {
            let rows = match events::tail(&state.db, published, settled, PAGE).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "event hub cannot read new events");
                    break;
                }
            };
            let last_page = (rows.len() as i64) < PAGE;
            for r in rows {
                // Published before it is sent: a stream that starts in between replays
                // it from the table, and skips the live copy by its cursor.
                published = r.seq;
                hub.published
                    .store(published, std::sync::atomic::Ordering::Release);
                let _ = hub.live.send(Arc::new(r));
            }
            if last_page {
                // What is missing below the horizon was rolled back.
                published = settled;
                hub.published
                    .store(published, std::sync::atomic::Ordering::Release);
            }
        }
    }
}

/// Keeps a horizon that goes further than the last one kept, to settle later.
fn note(pending: &mut VecDeque<Horizon>, h: &Horizon) {
    if pending.back().is_none_or(|b| h.max_seq > b.max_seq) {
        if pending.len() == MAX_PENDING {
            pending.pop_front();
        }
        pending.push_back(h.clone());
    }
}

/// The furthest kept horizon that has settled by `now`: none of the transactions
/// running when it was read runs any more (always so on SQLite, where none are listed).
fn settle(pending: &mut VecDeque<Horizon>, now: &Horizon) -> Option<i64> {
    let mut settled = None;
    while let Some(h) = pending
        .front()
        .filter(|h| !h.running.iter().any(|x| now.running.contains(x)))
    {
        settled = Some(h.max_seq);
        pending.pop_front();
    }
    settled
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

#[cfg(test)]
mod tests {
    use super::*;

    fn h(max_seq: i64, running: &[i64]) -> Horizon {
        Horizon {
            max_seq,
            running: running.to_vec(),
        }
    }

    #[test]
    fn a_horizon_settles_once_every_transaction_running_then_has_ended() {
        let mut p = VecDeque::new();
        // Seen with transactions 100 and 103 running.
        let first = h(10, &[100, 103]);
        note(&mut p, &first);
        assert_eq!(settle(&mut p, &first), None);
        // Later: further rows; 100 still runs, 107 started.
        let second = h(14, &[100, 107]);
        note(&mut p, &second);
        assert_eq!(settle(&mut p, &second), None);
        // 100 and 103 ended: the first horizon settles, not the second (107 runs).
        let third = h(14, &[107, 110]);
        note(&mut p, &third);
        assert_eq!(settle(&mut p, &third), Some(10));
        // 107 ended; 110 was not running when the second was read.
        assert_eq!(settle(&mut p, &h(15, &[110, 112])), Some(14));
        assert!(p.is_empty());
    }

    #[test]
    fn on_sqlite_every_horizon_is_settled_at_once() {
        let mut p = VecDeque::new();
        note(&mut p, &h(7, &[]));
        assert_eq!(settle(&mut p, &h(7, &[])), Some(7));
        // Kept again, and settled again (the hub publishes only what goes further).
        note(&mut p, &h(7, &[]));
        note(&mut p, &h(7, &[]));
        assert_eq!(p.len(), 1);
        assert_eq!(settle(&mut p, &h(7, &[])), Some(7));
    }
}
