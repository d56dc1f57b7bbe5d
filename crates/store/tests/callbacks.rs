//! The callback outbox on SQLite and PostgreSQL: deliveries made with their events,
//! claimed by one node at a time (also by two pools racing, as two nodes do), leases
//! that run out, attempts recorded, endpoints disabled once.

use std::collections::HashSet;

use paybridge_store::apps::AppRow;
use paybridge_store::callbacks::{self, AttemptRow, DeliveryFilter, EndpointRow, Next, Outcome};
use paybridge_store::events::{self, EventRow};
use paybridge_store::{apps, now_ms, Db, DbOptions, ListParams};
use paybridge_testkit::{Backend, TestDb};

paybridge_testkit::on_both!(
    events_fan_out_to_the_endpoints_that_want_them,
    two_nodes_never_claim_the_same_delivery,
    leases_run_out_and_attempts_are_recorded,
);

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
        callbacks::insert_endpoint(db.writer(), &e).await.unwrap();
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
    callbacks::insert_endpoint(
        db.writer(),
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
            let batch = callbacks::claim_due(&db, now_ms(), 60_000, 7)
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
    assert!(callbacks::claim_due(&db, now_ms(), 60_000, 100)
        .await
        .unwrap()
        .is_empty());
}

async fn leases_run_out_and_attempts_are_recorded(b: Backend) {
    let Some((_t, db)) = setup(b).await else {
        return;
    };
    callbacks::insert_endpoint(
        db.writer(),
        &endpoint("endpoint_all", "app_a", "[\"*\"]", "enabled"),
    )
    .await
    .unwrap();
    append(&db, &[event(1, "app_a", "order.paid")]).await;
    let t0 = now_ms();
    let d = callbacks::claim_due(&db, t0, 1_000, 10).await.unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].event_type, "order.paid");
    assert_eq!(d[0].url, "http://127.0.0.1:9/h");
    // Leased: not due again until the lease runs out (a node that died mid-attempt).
    assert!(callbacks::claim_due(&db, t0 + 500, 1_000, 10)
        .await
        .unwrap()
        .is_empty());
    let again = callbacks::claim_due(&db, t0 + 1_001, 1_000, 10)
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
    assert!(callbacks::claim_due(&db, t0 + 4_000, 1_000, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        callbacks::claim_due(&db, t0 + 5_000, 1_000, 10)
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
