//! The ingest path's group commit, on a real database.

use paybridge_store::apps::{self, AppRow};
use paybridge_store::orders::{self, OrderRow};
use paybridge_store::payments::{self, PaymentRow};
use paybridge_store::refunds::{self, RefundRow};
use paybridge_store::{Db, DbOptions};
use paybridge_testkit::{Backend, TestDb};
use tokio::sync::oneshot;

use super::{commit_batch, Ingested, Job};
use crate::service::ledger::{self, Outcome};

paybridge_testkit::on_both!(
    an_anomaly_is_counted_once_when_its_batch_is_tried_again,
    an_anomaly_in_a_batch_holding_a_repeat_is_logged_once,
    an_invoice_paid_twice_in_one_batch_tells_the_subscription_once,
    a_repeat_in_a_batch_is_counted_and_the_new_events_are_applied_once,
);

async fn open(b: Backend) -> Option<(TestDb, Db)> {
    let t = TestDb::new(b).await?;
    let db = Db::connect(&t.url, DbOptions::default())
        .await
        .expect("connect");
    db.migrate().await.expect("migrate");
    Some((t, db))
}

async fn app_with_payment(db: &Db, app: &str, intent: &str) -> PaymentRow {
    let row = AppRow {
        id: app.into(),
        name: app.into(),
        environment: "test".into(),
        demo: 0,
        created: 1,
    };
    apps::create_app(db, &row, &[], &[]).await.expect("app");
    payment_in(db, app, "", intent).await
}

/// A pending Stripe payment of `app` (`payment_{app}{n}`, of its own order) for `intent`.
async fn payment_in(db: &Db, app: &str, n: &str, intent: &str) -> PaymentRow {
    let order = OrderRow {
        id: format!("order_{app}{n}"),
        app_id: app.into(),
        customer_id: None,
        currency: "usd".into(),
        amount_total: 1000,
        amount_paid: 0,
        amount_refunded: 0,
        status: "open".into(),
        line_items: "[]".into(),
        metadata: "{}".into(),
        client_secret: String::new(),
        subscription_id: None,
        provider_invoice_id: None,
        created: 1,
        updated: 1,
    };
    let mut tx = db.begin().await.expect("begin");
    orders::insert(&mut *tx, &order).await.expect("order");
    let p = PaymentRow {
        provider: "stripe".into(),
        lifecycle: "pending".into(),
        status: "pending".into(),
        provider_payment_intent: Some(intent.into()),
        ..PaymentRow::initiated(
            format!("payment_{app}{n}"),
            app.into(),
            order.id.clone(),
            1000,
            "usd".into(),
            1,
        )
    };
    payments::insert(&mut *tx, &p).await.expect("payment");
    tx.commit().await.expect("commit");
    p
}

fn refund_event(id: &str, refund: &str, intent: &str) -> paybridge_core::stripe::event::Event {
    let body = serde_json::json!({
        "id": id, "object": "event", "type": "refund.updated", "created": 1,
        "livemode": false,
        "data": {"object": {"id": refund, "object": "refund", "amount": 700,
            "currency": "usd", "status": "succeeded", "payment_intent": intent}},
    });
    paybridge_core::stripe::event::parse(body.to_string().as_bytes()).expect("an event")
}

/// A batch that fails as a whole is tried again one event at a time: an anomaly found
/// in the failed try was rolled back with it, so it is counted once, after the commit
/// that keeps it (`paybridge_ledger_anomalies_total`).
async fn an_anomaly_is_counted_once_when_its_batch_is_tried_again(b: Backend) {
    let Some((_t, db)) = open(b).await else {
        return;
    };
    let mine = app_with_payment(&db, "app_x", "pi_x").await;
    let theirs = app_with_payment(&db, "app_y", "pi_y").await;
    // A refund of app_x on app_y's payment: applying an event about it fails (the
    // payment is not app_x's), and so does any batch holding that event.
    let ts = paybridge_store::now();
    let mut tx = db.begin().await.expect("begin");
    refunds::insert(
        &mut *tx,
        &RefundRow {
            id: "refund_broken".into(),
            app_id: "app_x".into(),
            payment_id: theirs.id.clone(),
            order_id: theirs.order_id.clone(),
            amount: 500,
            currency: "usd".into(),
            reason: None,
            status: "pending".into(),
            failure_reason: None,
            provider_refund_id: Some("re_broken".into()),
            refund_application_fee: 0,
            reverse_transfer: 0,
            source: "api".into(),
            metadata: "{}".into(),
            created: ts,
            updated: ts,
        },
    )
    .await
    .expect("refund");
    tx.commit().await.expect("commit");
    let before = ledger::ANOMALIES.get();
    let mut answers = Vec::new();
    let mut batch = Vec::new();
    // A refund on a payment that captured nothing: refused by the invariants.
    for event in [
        refund_event("evt_anomaly", "re_anomaly", "pi_x"),
        refund_event("evt_broken", "re_broken", "pi_y"),
    ] {
        let (reply, answer) = oneshot::channel();
        batch.push(Job {
            app: "app_x".into(),
            raw: "{}".into(),
            event,
            reply,
        });
        answers.push(answer);
    }
    commit_batch(&db, batch).await;
    let anomaly = answers.remove(0).await.expect("an answer");
    assert!(
        matches!(anomaly, Ok(Ingested::Applied(Outcome::Rejected(_)))),
        "{anomaly:?}"
    );
    let broken = answers.remove(0).await.expect("an answer");
    assert!(broken.is_err(), "{broken:?}");
    let stored = paybridge_store::events::count_of(&db, "app_x", "ledger.anomaly", &mine.id)
        .await
        .expect("count");
    assert_eq!(stored, 1, "one ledger.anomaly event committed");
    assert_eq!(
        ledger::ANOMALIES.get() - before,
        1,
        "counted once, as committed"
    );
}

/// A batch holding a repeat of an event stored before is applied, rolled back when
/// its insert finds the repeat, and applied again looking first (`apply_batch`). A
/// fact refused in it is logged once, after the commit that keeps its
/// `ledger.anomaly` event; logged where it was found, it was told twice.
async fn an_anomaly_in_a_batch_holding_a_repeat_is_logged_once(b: Backend) {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Log {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let Some((_t, db)) = open(b).await else {
        return;
    };
    let mine = app_with_payment(&db, "app_x", "pi_x").await;
    let first = intent_event("evt_first", "payment_intent.processing", "pi_x");
    let answers = ingest_batch(&db, vec![("app_x", first.clone())]).await;
    assert!(
        matches!(answers[0], Ok(Ingested::Applied(_))),
        "{answers:?}"
    );
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let before = ledger::ANOMALIES.get();
    let answers = {
        let _logging = tracing::subscriber::set_default(subscriber);
        // A refund on a payment that captured nothing: refused by the invariants.
        ingest_batch(
            &db,
            vec![
                ("app_x", first),
                ("app_x", refund_event("evt_anomaly", "re_anomaly", "pi_x")),
            ],
        )
        .await
    };
    assert_eq!(answers[0], Ok(Ingested::Duplicate));
    assert!(
        matches!(answers[1], Ok(Ingested::Applied(Outcome::Rejected(_)))),
        "{answers:?}"
    );
    let stored = paybridge_store::events::count_of(&db, "app_x", "ledger.anomaly", &mine.id)
        .await
        .expect("count");
    assert_eq!(stored, 1, "one ledger.anomaly event committed");
    assert_eq!(ledger::ANOMALIES.get() - before, 1, "counted once");
    let text = String::from_utf8(log.0.lock().expect("log").clone()).expect("utf-8");
    assert_eq!(
        text.matches("breaks the ledger's invariants").count(),
        1,
        "logged once: {text}"
    );
}

fn event(body: serde_json::Value) -> paybridge_core::stripe::event::Event {
    paybridge_core::stripe::event::parse(body.to_string().as_bytes()).expect("an event")
}

/// A renewal waiting for 3-D Secure, then the customer authenticates: Stripe sends
/// `invoice.paid` and `invoice.payment_succeeded` for the invoice, and both land in one
/// batch. The second must see the payment as the first left it (not a copy read from
/// the database), so the subscription is told once that its renewal was paid.
async fn an_invoice_paid_twice_in_one_batch_tells_the_subscription_once(b: Backend) {
    let Some((_t, db)) = open(b).await else {
        return;
    };
    let p = app_with_payment(&db, "app_r", "pi_r").await;
    let ts = paybridge_store::now();
    let mut tx = db.begin().await.expect("begin");
    paybridge_store::subscriptions::insert(
        &mut *tx,
        &paybridge_store::subscriptions::SubscriptionRow {
            id: "subscription_r".into(),
            app_id: "app_r".into(),
            customer_id: None,
            product_id: None,
            provider_price_id: Some("price_r".into()),
            quantity: 1,
            unit_amount: 1000,
            currency: "usd".into(),
            status: "past_due".into(),
            status_at: ts,
            provider_subscription_id: Some("sub_r".into()),
            current_period_start: Some(ts),
            current_period_end: Some(ts + 30 * 86_400),
            cancel_at_period_end: 0,
            canceled_at: None,
            checkout_id: None,
            metadata: "{}".into(),
            created: ts,
            updated: ts,
        },
    )
    .await
    .expect("subscription");
    for sql in [
        "UPDATE orders SET provider_invoice_id = 'in_r', subscription_id = 'subscription_r' WHERE id = 'order_app_r'",
        "UPDATE payments SET method = 'subscription', lifecycle = 'requires_action', status = 'requires_action' WHERE id = 'payment_app_r'",
    ] {
        sqlx::query(sql).execute(&mut *tx).await.expect(sql);
    }
    tx.commit().await.expect("commit");
    let invoice = |id: &str, kind: &str| {
        event(serde_json::json!({
            "id": id, "object": "event", "type": kind, "created": ts, "livemode": false,
            "data": {"object": {"id": "in_r", "object": "invoice", "subscription": "sub_r",
                "paid": true, "status": "paid", "amount_paid": 1000, "amount_due": 1000,
                "currency": "usd", "billing_reason": "subscription_cycle",
                "payment_intent": "pi_r", "metadata": {}}},
        }))
    };
    let paid = invoice("evt_in_r_paid", "invoice.paid");
    let succeeded = invoice("evt_in_r_succeeded", "invoice.payment_succeeded");
    let mut answers = Vec::new();
    let mut batch = Vec::new();
    for event in [paid, succeeded] {
        let (reply, answer) = oneshot::channel();
        batch.push(Job {
            app: "app_r".into(),
            raw: "{}".into(),
            event,
            reply,
        });
        answers.push(answer);
    }
    commit_batch(&db, batch).await;
    for a in answers {
        let r = a.await.expect("an answer");
        assert!(
            matches!(r, Ok(Ingested::Applied(Outcome::Processed(_)))),
            "{r:?}"
        );
    }
    let paid = payments::get(db.reader(), "app_r", &p.id)
        .await
        .expect("payment");
    assert_eq!(paid.lifecycle, "succeeded");
    assert_eq!(paid.amount_captured, 1000);
    let told = paybridge_store::events::count_of(
        &db,
        "app_r",
        "subscription.payment_succeeded",
        "subscription_r",
    )
    .await
    .expect("count");
    assert_eq!(
        told, 1,
        "the subscription is told once that its renewal was paid"
    );
}

/// One payment's events go to one lane, whatever object each is about (the intent, its
/// charge, a refund, its checkout session), so two lanes do not wait on its locks;
/// different payments spread over the lanes; an event about nothing of a payment goes
/// by its object, or its own id.
#[test]
fn a_payments_events_share_a_lane_and_payments_spread_over_the_lanes() {
    let about = |id: &str, kind: &str, object: serde_json::Value| {
        event(serde_json::json!({
            "id": id, "object": "event", "type": kind, "created": 1, "livemode": false,
            "data": {"object": object},
        }))
    };
    // A payment's events about its intent, its charge, a refund and its checkout
    // session: (type, object type, object id prefix, status).
    let kinds = [
        (
            "payment_intent.succeeded",
            "payment_intent",
            "pi",
            "succeeded",
        ),
        ("charge.succeeded", "charge", "ch", "succeeded"),
        ("charge.refund.updated", "refund", "re", "succeeded"),
        (
            "checkout.session.completed",
            "checkout.session",
            "cs",
            "complete",
        ),
    ];
    let of_payment = |n: usize| {
        kinds.map(|(kind, object, prefix, status)| {
            let mut fields = serde_json::json!({
                "id": format!("{prefix}_{n}"), "object": object, "status": status,
                "amount": 1000, "currency": "usd", "payment_status": "paid",
            });
            if object != "payment_intent" {
                fields["payment_intent"] = format!("pi_{n}").into();
            }
            about(&format!("evt_{prefix}_{n}"), kind, fields)
        })
    };
    for lanes in [2, 3, 4] {
        for n in 0..20 {
            let events = of_payment(n);
            let lane = super::lane_of("app_a", &events[0], lanes);
            for e in &events[1..] {
                assert_eq!(
                    super::lane_of("app_a", e, lanes),
                    lane,
                    "{} of pi_{n}",
                    e.kind
                );
            }
        }
        let mut used = vec![0; lanes];
        for n in 0..200 {
            used[super::lane_of("app_a", &of_payment(n)[0], lanes)] += 1;
        }
        assert!(
            used.iter().all(|&n| n > 200 / lanes / 2),
            "{lanes} lanes: {used:?}"
        );
    }
    let bare = |id: &str| {
        about(
            id,
            "account.updated",
            serde_json::json!({"object": "account"}),
        )
    };
    let lanes: std::collections::HashSet<usize> = (0..50)
        .map(|n| super::lane_of("app_a", &bare(&format!("evt_{n}")), 2))
        .collect();
    assert_eq!(lanes.len(), 2, "objectless events go by their own ids");
    assert_eq!(super::lane_of("app_a", &bare("evt_1"), 1), 0);
}

fn intent_event(id: &str, kind: &str, intent: &str) -> paybridge_core::stripe::event::Event {
    let status = kind.trim_start_matches("payment_intent.");
    event(serde_json::json!({
        "id": id, "object": "event", "type": kind, "created": 1, "livemode": false,
        "data": {"object": {"id": intent, "object": "payment_intent", "amount": 1000,
            "amount_received": if status == "succeeded" { 1000 } else { 0 },
            "currency": "usd", "status": status}},
    }))
}

/// Commits one batch of `(app, event)` and returns each job's answer.
async fn ingest_batch(
    db: &Db,
    events: Vec<(&str, paybridge_core::stripe::event::Event)>,
) -> Vec<Result<Ingested, String>> {
    let mut answers = Vec::new();
    let mut batch = Vec::new();
    for (app, event) in events {
        let (reply, answer) = oneshot::channel();
        batch.push(Job {
            app: app.into(),
            raw: format!("{{\"id\":\"{}\"}}", event.id),
            event,
            reply,
        });
        answers.push(answer);
    }
    commit_batch(db, batch).await;
    let mut out = Vec::new();
    for a in answers {
        out.push(a.await.expect("an answer"));
    }
    out
}

/// A batch holding two copies of an event stored before, beside new events: the repeat
/// is counted (three deliveries in all) and not applied again; the new events are
/// applied once and each is stored once with its outcome.
async fn a_repeat_in_a_batch_is_counted_and_the_new_events_are_applied_once(b: Backend) {
    let Some((_t, db)) = open(b).await else {
        return;
    };
    let p = app_with_payment(&db, "app_r", "pi_r").await;
    let processing = intent_event("evt_1", "payment_intent.processing", "pi_r");
    let first = ingest_batch(&db, vec![("app_r", processing.clone())]).await;
    assert!(
        matches!(first[0], Ok(Ingested::Applied(Outcome::Processed(_)))),
        "{first:?}"
    );
    let second = ingest_batch(
        &db,
        vec![
            (
                "app_r",
                intent_event("evt_2", "payment_intent.succeeded", "pi_r"),
            ),
            ("app_r", processing.clone()),
            ("app_r", processing),
            (
                "app_r",
                intent_event("evt_3", "payment_intent.requires_action", "pi_unknown"),
            ),
        ],
    )
    .await;
    assert!(
        matches!(second[0], Ok(Ingested::Applied(Outcome::Processed(_)))),
        "{second:?}"
    );
    assert_eq!(second[1], Ok(Ingested::Duplicate));
    assert_eq!(second[2], Ok(Ingested::Duplicate));
    assert!(
        matches!(second[3], Ok(Ingested::Applied(Outcome::Pending(_)))),
        "{second:?}"
    );
    let stored = |id: &'static str| {
        let db = db.clone();
        async move {
            paybridge_store::provider_events::get(db.reader(), "app_r", id)
                .await
                .expect("stored")
        }
    };
    let (e1, e2, e3) = (
        stored("evt_1").await,
        stored("evt_2").await,
        stored("evt_3").await,
    );
    assert_eq!(e1.received_count, 3, "the first delivery and two copies");
    assert_eq!((e1.outcome.as_str(), e1.attempts), ("processed", 1));
    assert_eq!(
        (e2.outcome.as_str(), e2.received_count, e2.attempts),
        ("processed", 1, 1)
    );
    assert_eq!((e3.outcome.as_str(), e3.attempts), ("pending", 1));
    assert!(e2.processed_at.is_some() && e2.detail.is_some());
    let payment = payments::get(db.reader(), "app_r", &p.id)
        .await
        .expect("payment");
    assert_eq!(payment.status, "succeeded");
    for kind in ["payment.processing", "payment.succeeded"] {
        let told = paybridge_store::events::count_of(&db, "app_r", kind, &p.id)
            .await
            .expect("count");
        assert_eq!(told, 1, "{kind} told once");
    }
}

/// Two nodes (two pools on one PostgreSQL database) take the same events at the same
/// moment, each as one batch (in opposite orders), round after round: each event is
/// applied by one of them and counted as a repeat by the other. Each batch must
/// succeed as a batch: `apply_batch` is called directly, so a deadlock or a lock
/// conflict between the two shows as an error, not as the one-by-one fallback. The
/// node whose insert finds the other's events rolls back and tries again
/// (`try_batch`); without that, both would apply them (16 applied, not 8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_racing_on_the_same_events_apply_each_once() {
    race_two_nodes(|n| format!("app_{n}")).await;
}

/// The same, with the four payments of one app: each batch locks and stores for one
/// app, the common case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_racing_on_one_apps_events_apply_each_once() {
    race_two_nodes(|_| "app_s".to_owned()).await;
}

/// The race above, with payment `n` of app `app_of(n)`.
async fn race_two_nodes(app_of: fn(usize) -> String) {
    let Some((t, one)) = open(Backend::Postgres).await else {
        return;
    };
    let other = Db::connect(&t.url, DbOptions::default())
        .await
        .expect("connect");
    let mut payments_of = Vec::new();
    for n in 0..4 {
        let (app, intent) = (app_of(n), format!("pi_{n}"));
        payments_of.push(if n > 0 && app_of(n - 1) == app {
            payment_in(&one, &app, &n.to_string(), &intent).await
        } else {
            app_with_payment(&one, &app, &intent).await
        });
    }
    let jobs = |round: usize, reverse: bool| {
        let mut v: Vec<Job> = (0..4)
            .flat_map(|n| {
                let kinds = ["payment_intent.processing", "payment_intent.succeeded"];
                kinds.map(|kind| Job {
                    app: app_of(n),
                    event: intent_event(
                        &format!("evt_{round}_{kind}_{n}"),
                        kind,
                        &format!("pi_{n}"),
                    ),
                    raw: "{}".into(),
                    reply: oneshot::channel().0,
                })
            })
            .collect();
        if reverse {
            v.reverse();
        }
        v
    };
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    for round in 0..10 {
        let node = |db: Db, jobs: Vec<Job>| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                super::apply_batch(&db, &jobs)
                    .await
                    .map_err(|e| e.to_string())
            })
        };
        let a = node(one.clone(), jobs(round, false));
        let b = node(other.clone(), jobs(round, true));
        let (a, b) = (a.await.expect("node a"), b.await.expect("node b"));
        let (a, b) = (
            a.unwrap_or_else(|e| panic!("round {round}, node a: {e}")),
            b.unwrap_or_else(|e| panic!("round {round}, node b: {e}")),
        );
        let applied = a
            .iter()
            .chain(&b)
            .filter(|r| matches!(r, Ingested::Applied(_)))
            .count();
        assert_eq!(
            applied, 8,
            "round {round}: each of the 8 events applied once"
        );
        for n in 0..4 {
            let app = app_of(n);
            for kind in ["payment_intent.processing", "payment_intent.succeeded"] {
                let id = format!("evt_{round}_{kind}_{n}");
                let e = paybridge_store::provider_events::get(one.reader(), &app, &id)
                    .await
                    .expect("stored");
                assert_eq!(e.received_count, 2, "{id}: one delivery to each node");
            }
        }
    }
    for (n, p) in payments_of.iter().enumerate() {
        let row = payments::get(one.reader(), &app_of(n), &p.id)
            .await
            .expect("payment");
        assert_eq!(row.status, "succeeded");
    }
}

/// Ingests `kind` about `intent` as event `id` of `app`, and asserts it was applied
/// with the outcome `processed`.
async fn ingest_processed(
    ingestor: &super::Ingestor,
    app: &str,
    id: &str,
    kind: &str,
    intent: &str,
) {
    let answer = ingestor
        .ingest(app, intent_event(id, kind, intent), "{}".into())
        .await;
    assert!(
        matches!(answer, Ok(Ingested::Applied(Outcome::Processed(_)))),
        "{id}: {answer:?}"
    );
}

/// On PostgreSQL a lane writes through a connection of its own
/// (`Db::with_own_connection`), opened on the lane's runtime: an event is stored and
/// applied while API transactions hold every connection of the shared pool (a lane
/// that borrowed the shared pool's waited for one, and the event failed when the
/// wait timed out), and the lane's connection is closed when the ingestor goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_applies_events_while_api_transactions_hold_the_shared_pool() {
    let Some(t) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let db = Db::connect(
        &t.url,
        DbOptions {
            max_connections: 2,
            acquire_timeout: std::time::Duration::from_secs(5),
            ..DbOptions::default()
        },
    )
    .await
    .expect("connect");
    db.migrate().await.expect("migrate");
    let p = app_with_payment(&db, "app_h", "pi_h").await;
    let connections = || {
        let url = t.url.clone();
        async move {
            let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
                .await
                .expect("connect");
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            )
            .fetch_one(&mut c)
            .await
            .expect("count");
            let _ = sqlx::Connection::close(c).await;
            n
        }
    };
    let held = (
        db.begin().await.expect("first"),
        db.begin().await.expect("second"),
    );
    let ingestor = super::Ingestor::start(db.clone(), 2);
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        ingest_processed(
            &ingestor,
            "app_h",
            "evt_h",
            "payment_intent.succeeded",
            "pi_h",
        ),
    )
    .await
    .expect("answered while the shared pool is held");
    assert_eq!(
        connections().await,
        3,
        "the shared pool's two and the one lane's that had an event"
    );
    drop(held);
    let row = payments::get(db.reader(), "app_h", &p.id)
        .await
        .expect("payment");
    assert_eq!(row.status, "succeeded");
    drop(ingestor);
    let mut left = 0;
    for _ in 0..100 {
        left = connections().await;
        if left == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(left, 2, "the lane's connection closed with the ingestor");
}

/// The server process of a PostgreSQL lane's connection ends (as when PostgreSQL
/// restarts): the lane's next batch fails on the dead connection, is tried again on a
/// new one (`commit_batch`), and is applied once; its request is answered as if
/// nothing had happened. The lane's connection is found by its `application_name`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_whose_connection_is_killed_goes_on_with_a_new_one() {
    let Some((_t, db)) = open(Backend::Postgres).await else {
        return;
    };
    let p = app_with_payment(&db, "app_k", "pi_k").await;
    let ingestor = super::Ingestor::start(db.clone(), 1);
    let lane_pid = || {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT CAST(pid AS BIGINT) FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name = $1",
            )
            .bind(super::LANE_CONNECTION)
            .fetch_optional(db.reader())
            .await
            .expect("pg_stat_activity")
        }
    };
    ingest_processed(
        &ingestor,
        "app_k",
        "evt_k1",
        "payment_intent.processing",
        "pi_k",
    )
    .await;
    let killed = lane_pid()
        .await
        .expect("the lane's connection, by its name");
    sqlx::query("SELECT pg_terminate_backend(CAST($1 AS INTEGER))")
        .bind(killed)
        .execute(db.reader())
        .await
        .expect("terminate");
    for _ in 0..250 {
        if lane_pid().await.is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(lane_pid().await, None, "the lane's server process ended");
    ingest_processed(
        &ingestor,
        "app_k",
        "evt_k2",
        "payment_intent.succeeded",
        "pi_k",
    )
    .await;
    let now = lane_pid().await.expect("a new connection");
    assert_ne!(now, killed);
    let row = payments::get(db.reader(), "app_k", &p.id)
        .await
        .expect("payment");
    assert_eq!(row.status, "succeeded");
    let told = paybridge_store::events::count_of(&db, "app_k", "payment.succeeded", &p.id)
        .await
        .expect("count");
    assert_eq!(told, 1, "payment.succeeded told once");
}

/// On PostgreSQL a stored provider event takes no lock on its app's row (migration
/// 0021 dropped the foreign key that took one, `FOR KEY SHARE`, in every webhook
/// batch, and made concurrent batches share it as a multixact). Another transaction
/// holds the app's row locked `FOR UPDATE`, which conflicts with that lock: an event
/// about an object paybridge does not know, which only stores the event, is still
/// stored and answered at once. With the foreign key it waited for that transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_stored_while_its_apps_row_is_locked() {
    let Some((_t, db)) = open(Backend::Postgres).await else {
        return;
    };
    app_with_payment(&db, "app_l", "pi_l").await;
    let mut holder = db.begin().await.expect("begin");
    sqlx::query("SELECT id FROM apps WHERE id = 'app_l' FOR UPDATE")
        .execute(&mut *holder)
        .await
        .expect("lock the app's row");
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        ingest_batch(
            &db,
            vec![(
                "app_l",
                intent_event("evt_l", "payment_intent.processing", "pi_elsewhere"),
            )],
        ),
    )
    .await
    .expect("stored while another transaction holds the app's row");
    assert!(
        matches!(answer[0], Ok(Ingested::Applied(Outcome::Pending(_)))),
        "{answer:?}"
    );
    holder.rollback().await.expect("rollback");
    let stored = paybridge_store::provider_events::get(db.reader(), "app_l", "evt_l")
        .await
        .expect("stored");
    assert_eq!(stored.outcome, "pending");
}
