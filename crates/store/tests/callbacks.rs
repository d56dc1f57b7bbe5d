//! The callback outbox on SQLite and PostgreSQL: deliveries made with their events,
//! claimed by one node at a time (also by two pools racing, as two nodes do), leases
//! that run out, attempts recorded, endpoints disabled once.

use std::collections::HashSet;

use paybridge_store::apps::AppRow;
use paybridge_store::callbacks::{
    self, AttemptRow, Caps, DeliveryFilter, EndpointRow, Next, Outcome,
};
use paybridge_store::events::{self, EventRow};
use paybridge_store::{apps, now_ms, Db, DbOptions, ListParams};
use paybridge_testkit::{Backend, TestDb};

paybridge_testkit::on_both!(
    events_fan_out_to_the_endpoints_that_want_them,
    two_nodes_never_claim_the_same_delivery,
    leases_run_out_and_attempts_are_recorded,
    claims_take_apps_in_turns_and_hold_to_their_caps,
);

/// Caps no test here reaches (these tests are about leases, not fairness).
const UNCAPPED: Caps = Caps {
    per_app: 1_000_000,
    per_failing_endpoint: 1_000_000,
};

async fn open(t: &TestDb) -> Db {
    let db = Db::connect(&t.url, DbOptions::default())
        .await
        .expect("connect");
    db.migrate().await.expect("migrate");
    db
}

async fn setup(b: Backend) -> Option<(TestDb, Db)> {
    let t = TestDb::new(b).await?;
    let db = open(&t).await;
    for id in ["app_a", "app_b"] {
        apps::create_app(
            &db,
            &AppRow {
                id: id.into(),
                name: "A".into(),
                environment: "test".into(),
                demo: 0,
                created: 1,
            },
            &[],
            &[],
        )
        .await
        .unwrap();
    }
    Some((t, db))
}

fn endpoint(id: &str, app: &str, events: &str, status: &str) -> EndpointRow {
    EndpointRow {
        id: id.into(),
        app_id: app.into(),
        url: "http://127.0.0.1:9/h".into(),
        events: events.into(),
        secret_sealed: "sealed".into(),
        previous_secret_sealed: None,
        previous_secret_expires: None,
        status: status.into(),
        failing_since: None,
        disabled_reason: None,
        created: 1,
        updated: 1,
    }
}

fn event(n: usize, app: &str, kind: &str) -> EventRow {
    EventRow {
        seq: 0,
        id: format!("event_{n:06}"),
        app_id: app.into(),
        kind: kind.into(),
        object_id: format!("payment_{n}"),
        order_id: None,
        payment_id: None,
        customer_id: None,
        data: "{}".into(),
        created: 1,
    }
}

async fn put_endpoint(db: &Db, e: &EndpointRow) -> paybridge_store::Result<()> {
    let mut w = db.autocommit().await?;
    callbacks::insert_endpoint(&mut *w, e).await?;
    w.commit().await?;
    Ok(())
}

async fn append(db: &Db, rows: &[EventRow]) {
    let mut tx = db.begin().await.unwrap();
    events::append_many(&mut tx, rows).await.unwrap();
    tx.commit().await.unwrap();
}

fn all() -> ListParams {
    ListParams {
        limit: 100,
        starting_after: None,
    }
}

async fn events_fan_out_to_the_endpoints_that_want_them(b: Backend) {
    let Some((_t, db)) = setup(b).await else {
        return;
    };
    for e in [
        endpoint("endpoint_all", "app_a", "[\"*\"]", "enabled"),
        endpoint("endpoint_paid", "app_a", "[\"order.paid\"]", "enabled"),
        endpoint("endpoint_off", "app_a", "[\"*\"]", "disabled"),
        endpoint("endpoint_b", "app_b", "[\"*\"]", "enabled"),
    ] {
        put_endpoint(&db, &e).await.unwrap();
    }
    append(
        &db,
        &[
            event(1, "app_a", "payment.succeeded"),
            event(2, "app_a", "order.paid"),
            event(3, "app_b", "order.paid"),
        ],
    )
    .await;
    let of = |endpoint: &'static str, app: &'static str| {
        let db = db.clone();
        async move {
            let f = DeliveryFilter {
                endpoint: Some(endpoint),
                ..Default::default()
            };
            let mut v: Vec<String> = callbacks::deliveries(&db, app, &f, &all())
                .await
                .unwrap()
                .data
                .into_iter()
                .map(|d| d.event_id)
                .collect();
            v.sort();
            v
        }
    };
    assert_eq!(
        of("endpoint_all", "app_a").await,
        ["event_000001", "event_000002"]
    );
    assert_eq!(of("endpoint_paid", "app_a").await, ["event_000002"]);
    assert!(
        of("endpoint_off", "app_a").await.is_empty(),
        "a disabled endpoint gets nothing new"
    );
    assert_eq!(of("endpoint_b", "app_b").await, ["event_000003"]);
    assert!(of("endpoint_b", "app_a").await.is_empty(), "apps are apart");
    // A rolled-back transaction leaves neither event nor delivery.
    let mut tx = db.begin().await.unwrap();
    events::append_many(&mut tx, &[event(4, "app_a", "order.paid")])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(callbacks::backlog(&db).await.unwrap(), 4);
}

async fn two_nodes_never_claim_the_same_delivery(b: Backend) {
    let Some((t, db)) = setup(b).await else {
        return;
    };
    put_endpoint(
        &db,
        &endpoint("endpoint_all", "app_a", "[\"*\"]", "enabled"),
    )
    .await
    .unwrap();
    let rows: Vec<EventRow> = (0..600)
        .map(|n| event(n, "app_a", "payment.succeeded"))
        .collect();
    append(&db, &rows).await;
    // A second pool on the same database, as a second node has.
    let other = open(&t).await;
    let claim = |db: Db| async move {
        let mut mine = Vec::new();
        loop {
            let batch = callbacks::claim_due(&db, now_ms(), 60_000, 7, UNCAPPED)
                .await
                .unwrap();
            if batch.is_empty() {
                return mine;
            }
            mine.extend(batch.into_iter().map(|d| d.id));
        }
    };
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            tokio::spawn(claim(if i % 2 == 0 {
                db.clone()
            } else {
                other.clone()
            }))
        })
        .collect();
    let mut seen = HashSet::new();
    let mut total = 0;
    for t in tasks {
        for id in t.await.unwrap() {
            total += 1;
            assert!(seen.insert(id.clone()), "{id} claimed twice");
        }
    }
    assert_eq!(total, 600);
    assert!(callbacks::claim_due(&db, now_ms(), 60_000, 100, UNCAPPED)
        .await
        .unwrap()
        .is_empty());
}

async fn leases_run_out_and_attempts_are_recorded(b: Backend) {
    let Some((_t, db)) = setup(b).await else {
        return;
    };
    put_endpoint(
        &db,
        &endpoint("endpoint_all", "app_a", "[\"*\"]", "enabled"),
    )
    .await
    .unwrap();
    append(&db, &[event(1, "app_a", "order.paid")]).await;
    let t0 = now_ms();
    let d = callbacks::claim_due(&db, t0, 1_000, 10, UNCAPPED)
        .await
        .unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].event_type, "order.paid");
    assert_eq!(d[0].url, "http://127.0.0.1:9/h");
    // Leased: not due again until the lease runs out (a node that died mid-attempt).
    assert!(callbacks::claim_due(&db, t0 + 500, 1_000, 10, UNCAPPED)
        .await
        .unwrap()
        .is_empty());
    let again = callbacks::claim_due(&db, t0 + 1_001, 1_000, 10, UNCAPPED)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);

    let attempt = |code: Option<i64>| AttemptRow {
        delivery_id: d[0].id.clone(),
        app_id: "app_a".into(),
        attempted_ms: t0,
        status_code: code,
        latency_ms: 3,
        response_snippet: Some("nope".into()),
        error: code.filter(|c| *c != 200).map(|c| format!("answered {c}")),
        node: "n1".into(),
    };
    let record = |code: Option<i64>, next: Next| {
        let db = db.clone();
        let o = Outcome {
            endpoint: "endpoint_all".into(),
            attempt: attempt(code),
            next,
        };
        async move { callbacks::record_attempts(&db, &[o]).await.unwrap() }
    };
    let failing = record(Some(500), Next::RetryAt(t0 + 5_000)).await;
    assert_eq!(
        failing,
        [("endpoint_all".to_owned(), 0)],
        "failing since just now"
    );
    assert!(callbacks::claim_due(&db, t0 + 4_000, 1_000, 10, UNCAPPED)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        callbacks::claim_due(&db, t0 + 5_000, 1_000, 10, UNCAPPED)
            .await
            .unwrap()
            .len(),
        1
    );
    let ok = record(Some(200), Next::Succeeded).await;
    assert!(ok.is_empty());
    let row = callbacks::delivery(&db, "app_a", &d[0].id).await.unwrap();
    assert_eq!((row.status.as_str(), row.attempts), ("succeeded", 2));
    let log = callbacks::attempts(&db, "app_a", &d[0].id).await.unwrap();
    assert_eq!(
        log.iter().map(|a| a.status_code).collect::<Vec<_>>(),
        [Some(500), Some(200)]
    );
    assert!(callbacks::endpoint(&db, "app_a", "endpoint_all")
        .await
        .unwrap()
        .failing_since
        .is_none());
    assert!(callbacks::attempts(&db, "app_b", &d[0].id)
        .await
        .unwrap()
        .is_empty());

    // Disabling happens once, however many nodes notice.
    append(&db, &[event(2, "app_a", "order.paid")]).await;
    let mut tx = db.begin().await.unwrap();
    let first = callbacks::disable_failing(&mut tx, "endpoint_all", "failing")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    let second = callbacks::disable_failing(&mut tx, "endpoint_all", "failing")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(first.map(|e| e.status), Some("disabled".to_owned()));
    assert!(second.is_none());
    assert_eq!(
        callbacks::backlog(&db).await.unwrap(),
        0,
        "its pending deliveries stopped"
    );
}

/// One app with many due deliveries (older than everyone else's, its endpoints hanging)
/// and another app with one: a claim gives the other app its turn, an app never holds
/// more than its cap in flight, a failing endpoint never more than its own, and the
/// caps count every node's leases.
async fn claims_take_apps_in_turns_and_hold_to_their_caps(b: Backend) {
    let Some((t, db)) = setup(b).await else {
        return;
    };
    for i in 0..4 {
        put_endpoint(
            &db,
            &endpoint(&format!("endpoint_a{i}"), "app_a", "[\"*\"]", "enabled"),
        )
        .await
        .unwrap();
    }
    let mut failing = endpoint("endpoint_a_failing", "app_a", "[\"*\"]", "enabled");
    failing.failing_since = Some(1);
    put_endpoint(&db, &failing).await.unwrap();
    put_endpoint(&db, &endpoint("endpoint_b", "app_b", "[\"*\"]", "enabled"))
        .await
        .unwrap();
    // 60 events for app A (5 endpoints: 300 deliveries), then one for app B.
    let rows: Vec<EventRow> = (0..60).map(|n| event(n, "app_a", "order.paid")).collect();
    append(&db, &rows).await;
    append(&db, &[event(100, "app_b", "order.paid")]).await;
    let caps = Caps {
        per_app: 20,
        per_failing_endpoint: 2,
    };
    let other = open(&t).await;
    let now = now_ms();
    // A claim takes app A's endpoints in turns: 10 deliveries, two per endpoint.
    let first = callbacks::claim_due(&db, now, 60_000, 10, caps)
        .await
        .unwrap();
    assert_eq!(first.len(), 10);
    let mut per_endpoint = std::collections::HashMap::new();
    for d in &first {
        *per_endpoint.entry(d.endpoint_id.as_str()).or_insert(0) += 1;
    }
    assert_eq!(per_endpoint.len(), 5, "{per_endpoint:?}");
    assert!(per_endpoint.values().all(|n| *n == 2), "{per_endpoint:?}");
    // Claiming on (from both "nodes"), app A never gets past its cap, nor the failing
    // endpoint past its own, while nothing is recorded (every attempt still hanging);
    // and once app A holds its cap, app B's delivery is claimed, though 280 of app A's
    // are older.
    let mut all = first;
    for i in 0..10 {
        let pool = if i % 2 == 0 { &db } else { &other };
        let batch = callbacks::claim_due(pool, now, 60_000, 10, caps)
            .await
            .unwrap();
        if all.iter().filter(|d| d.app_id == "app_a").count() < 20 {
            assert!(batch.iter().all(|d| d.app_id == "app_a"), "oldest first");
        }
        all.extend(batch);
    }
    let of_a = all.iter().filter(|d| d.app_id == "app_a").count();
    let of_failing = all
        .iter()
        .filter(|d| d.endpoint_id == "endpoint_a_failing")
        .count();
    assert_eq!(of_a, 20, "app A holds exactly its cap");
    assert_eq!(of_failing, 2, "the failing endpoint holds exactly its cap");
    assert_eq!(all.iter().filter(|d| d.app_id == "app_b").count(), 1);
    // Once app A's attempts are recorded, its slots are free again.
    let done: Vec<Outcome> = all
        .iter()
        .filter(|d| d.app_id == "app_a")
        .map(|d| Outcome {
            endpoint: d.endpoint_id.clone(),
            attempt: AttemptRow {
                delivery_id: d.id.clone(),
                app_id: "app_a".into(),
                attempted_ms: now,
                status_code: Some(200),
                latency_ms: 15,
                response_snippet: None,
                error: None,
                node: "n1".into(),
            },
            next: Next::Succeeded,
        })
        .collect();
    callbacks::record_attempts(&db, &done).await.unwrap();
    let more = callbacks::claim_due(&db, now, 60_000, 50, caps)
        .await
        .unwrap();
    assert_eq!(more.len(), 20, "app A has its 20 slots back");
}
