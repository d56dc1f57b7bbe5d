//! Prometheus metrics, exposed as text at `/metrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// One of a fixed set (see [`method_label`]): a made-up method is `other`.
    pub method: &'static str,
    /// The route template (`/v1/products/{id}`), never the raw path: ids would make
    /// the label set unbounded.
    pub route: String,
    pub status: u16,
}

/// A request's method as a label or log field: the methods HTTP defines, and `other`
/// for anything a caller made up (which would otherwise grow `/metrics` and the logs
/// by whatever it sent).
pub fn method_label(m: &http::Method) -> &'static str {
    use http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// What became of it: for webhook events `processed`, `anomaly` (stored, but
    /// refused by the ledger's invariants), `duplicate` or `rejected` (refused before
    /// it was stored: signature, shape, mode); see the families using it for theirs.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLimitLabels {
    /// `anonymous`, `publishable`, `publishable_write`, `secret_key`, `webhook`,
    /// `streams` (see `http::limits`).
    pub class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_latency: Family<RouteLabels, Histogram>,
    pub webhook_events: Family<OutcomeLabels, Counter>,
    /// Requests refused with a 429, by the budget they ran out of.
    pub rate_limited: Family<RateLimitLabels, Counter>,
    /// Callback attempts by what became of the delivery (`succeeded`, `retrying`, `failed`).
    pub callback_attempts: Family<OutcomeLabels, Counter>,
    /// Deliveries still to make (all nodes; refreshed every few seconds).
    pub callback_backlog: Gauge,
    /// From a delivery's creation to the start of its first attempt.
    pub callback_first_attempt_lag: Histogram,
    /// 1 while this node runs the cluster-wide workers.
    pub leader: Gauge,
    /// Events the catch-up worker read from Stripe's event list, by `outcome`: `new`
    /// (missed by webhooks, applied now) or `known`.
    pub event_sync_events: Family<OutcomeLabels, Counter>,
    /// Catch-up rounds that failed.
    pub event_sync_failures: Counter,
    /// Seconds since the stalest Stripe app's last complete catch-up round.
    pub event_sync_lag: Gauge,
    /// SQLite: group commits the writer has made, and the transactions they held
    /// (refreshed when the metrics are read).
    pub db_group_commits: Gauge,
    pub db_group_transactions: Gauge,
    /// SQLite: seconds the writer's connection has been held (its rate near 1 means
    /// the writer is the bound). Brought up to the writer's total when the metrics are
    /// read (`record_writer_held`).
    pub db_writer_held: Counter<f64, AtomicU64>,
    /// SQLite: the writer's steps of the background checkpoint, and the seconds they
    /// held it (every write waits meanwhile; part of `db_writer_held`).
    pub db_checkpoint_steps: Gauge,
    pub db_checkpoint_held: Counter<f64, AtomicU64>,
    held_update: std::sync::Arc<std::sync::Mutex<()>>,
}

impl Metrics {
    /// Brings the writer's held-time counter up to `total` seconds (concurrent reads of
    /// the metrics add the difference once).
    pub fn record_writer_held(&self, total: f64) {
        self.bring_up(&self.db_writer_held, total);
    }

    /// Brings the checkpoint steps' held-time counter up to `total` seconds.
    pub fn record_checkpoint_held(&self, total: f64) {
        self.bring_up(&self.db_checkpoint_held, total);
    }

    fn bring_up(&self, counter: &Counter<f64, AtomicU64>, total: f64) {
        let _one_at_a_time = self.held_update.lock().unwrap_or_else(|p| p.into_inner());
        let counted = counter.get();
        if total > counted {
            counter.inc_by(total - counted);
        }
    }

    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("paybridge");
        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests served",
            http_requests.clone(),
        );
        let http_latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ])
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            http_latency.clone(),
        );
        let webhook_events = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "webhook_events",
            "Provider webhook events received, by outcome",
            webhook_events.clone(),
        );
        for outcome in ["processed", "anomaly", "duplicate", "rejected"] {
            let _ = webhook_events.get_or_create(&OutcomeLabels { outcome });
        }
        registry.register(
            "ledger_anomalies",
            "Facts refused by the ledger's invariants (webhooks, provider answers, the reconciler)",
            crate::service::ledger::ANOMALIES.clone(),
        );
        let rate_limited = Family::<RateLimitLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused with 429, by the budget they ran out of",
            rate_limited.clone(),
        );
        let callback_attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "callback_attempts",
            "Callback delivery attempts, by what became of the delivery",
            callback_attempts.clone(),
        );
        for outcome in ["succeeded", "retrying", "failed"] {
            let _ = callback_attempts.get_or_create(&OutcomeLabels { outcome });
        }
        let callback_backlog = Gauge::default();
        registry.register(
            "callback_backlog",
            "Callback deliveries still to make",
            callback_backlog.clone(),
        );
        let callback_first_attempt_lag =
            Histogram::new([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        registry.register(
            "callback_first_attempt_lag_seconds",
            "From a callback delivery's creation to its first attempt",
            callback_first_attempt_lag.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "cluster_leader",
            "1 while this node runs the reconciler and housekeeping for the cluster",
            leader.clone(),
        );
        let event_sync_events = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "event_sync_events",
            "Events read from Stripe's event list by the catch-up worker, by outcome (new: missed by webhooks)",
            event_sync_events.clone(),
        );
        for outcome in ["new", "known"] {
            let _ = event_sync_events.get_or_create(&OutcomeLabels { outcome });
        }
        let event_sync_failures = Counter::default();
        registry.register(
            "event_sync_failures",
            "Catch-up rounds over Stripe's event list that failed",
            event_sync_failures.clone(),
        );
        let event_sync_lag = Gauge::default();
        registry.register(
            "event_sync_lag_seconds",
            "Seconds since the stalest Stripe app's last complete catch-up round",
            event_sync_lag.clone(),
        );
        let db_group_commits = Gauge::default();
        registry.register(
            "db_group_commits",
            "SQLite: commits of the writer's transaction groups (each one fsync)",
            db_group_commits.clone(),
        );
        let db_group_transactions = Gauge::default();
        registry.register(
            "db_group_transactions",
            "SQLite: write transactions committed, in groups (divide by db_group_commits for the mean group)",
            db_group_transactions.clone(),
        );
        let db_writer_held = Counter::<f64, AtomicU64>::default();
        registry.register(
            "db_writer_held_seconds",
            "SQLite: seconds the writer's connection has been held by a transaction, a commit or a checkpoint",
            db_writer_held.clone(),
        );
        let db_checkpoint_steps = Gauge::default();
        registry.register(
            "db_checkpoint_steps",
            "SQLite: the writer's steps of the background WAL checkpoint",
            db_checkpoint_steps.clone(),
        );
        let db_checkpoint_held = Counter::<f64, AtomicU64>::default();
        registry.register(
            "db_checkpoint_held_seconds",
            "SQLite: seconds the writer's checkpoint steps held it (every write waits meanwhile)",
            db_checkpoint_held.clone(),
        );
        Metrics {
            db_checkpoint_steps,
            db_checkpoint_held,
            db_group_commits,
            db_group_transactions,
            db_writer_held,
            held_update: Default::default(),
            event_sync_events,
            event_sync_failures,
            event_sync_lag,
            leader,
            registry,
            http_requests,
            http_latency,
            webhook_events,
            rate_limited,
            callback_attempts,
            callback_backlog,
            callback_first_attempt_lag,
        }
    }

    pub fn count_callback(&self, outcome: &'static str) {
        self.callback_attempts
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// A catch-up round's count: `new` of `relevant` events were missing.
    pub fn event_sync_events(&self, new: usize, relevant: usize) {
        let get = |outcome| {
            self.event_sync_events
                .get_or_create(&OutcomeLabels { outcome })
        };
        get("new").inc_by(new as u64);
        get("known").inc_by(relevant.saturating_sub(new) as u64);
    }

    pub fn event_sync_failed(&self) {
        self.event_sync_failures.inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    /// The writer's held time is a counter brought up to the writer's total: it never
    /// goes back, and concurrent reads of the metrics add each difference once.
    #[test]
    fn the_writer_held_counter_follows_the_total() {
        let m = Metrics::new();
        m.record_writer_held(1.5);
        m.record_writer_held(1.2);
        assert_eq!(m.db_writer_held.get(), 1.5);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| m.record_writer_held(2.0));
            }
        });
        assert_eq!(m.db_writer_held.get(), 2.0);
        // The checkpoint steps' share of it is brought up the same way, on its own.
        m.record_checkpoint_held(0.25);
        m.record_checkpoint_held(0.1);
        assert_eq!(m.db_checkpoint_held.get(), 0.25);
        assert_eq!(m.db_writer_held.get(), 2.0);
        let text = m.render();
        assert!(
            text.contains("# TYPE paybridge_db_writer_held_seconds counter")
                && text.contains("paybridge_db_writer_held_seconds_total 2.0")
                && text.contains("paybridge_db_checkpoint_held_seconds_total 0.25"),
            "{text}"
        );
    }
}
