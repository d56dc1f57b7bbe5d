//! `Idempotency-Key`: replay, mismatch, in flight, concurrency, restarts, two nodes,
//! and removal after the retention.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{Backend, Server, TestDb};

paybridge_testkit::on_both!(
    replay_mismatch_and_in_flight,
    concurrent_requests_with_one_key_execute_once,
    keys_hold_across_restarts_and_two_processes,
    expired_keys_are_removed_by_the_worker,
);

async fn create(s: &Server, key: &str, idem: &str, name: &str) -> crate::common::Resp {
    s.call_with(
        Method::POST,
        "/v1/products",
        Some(key),
        Some(json!({"name": name, "unit_amount": 100, "currency": "usd"})),
        &[("idempotency-key", idem)],
    )
    .await
}

async fn replay_mismatch_and_in_flight(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.app("test").await;
    let first = create(&s, &a.admin, "order-1", "Tea").await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = create(&s, &a.admin, "order-1", "Tea").await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(again.json, first.json);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM products").await, 1);

    let other = create(&s, &a.admin, "order-1", "Coffee").await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        other.error(),
        (
            "idempotency_error".into(),
            "idempotency_key_reused".into(),
            Some("Idempotency-Key".into())
        )
    );

    // Keys are per app: another app may use the same key for its own request.
    let b2 = s.app("test").await;
    assert_eq!(
        create(&s, &b2.admin, "order-1", "Tea")
            .await
            .header("idempotent-replayed"),
        None
    );

    // A request still running holds its key: simulate the first one mid-flight.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    // Keys belong to the API key that sent them: the admin key's own id.
    let keys = s.get(&format!("/v1/apps/{}/keys", a.id), &a.admin).await;
    let admin_key = keys.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "admin")
        .expect("the admin key")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    db.execute(&format!(
        "INSERT INTO idempotency_keys (scope, key_id, key, fingerprint, state, created, locked_ms) VALUES ('{}', '{admin_key}', 'busy', 'x', 'running', {}, {})",
        a.id,
        now.as_secs(),
        now.as_millis()
    ))
    .await;
    let r = create(&s, &a.admin, "busy", "Tea").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error().1, "idempotency_key_in_use");

    // A validation failure is not stored: the corrected request may reuse the key.
    let bad = s
        .call_with(
            Method::POST,
            "/v1/products",
            Some(&a.admin),
            Some(json!({"name": ""})),
            &[("idempotency-key", "fix-me")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        create(&s, &a.admin, "fix-me", "Fixed").await.status,
        StatusCode::CREATED
    );
    assert_eq!(db.scalar("SELECT COUNT(*) FROM products").await, 3);
}

async fn concurrent_requests_with_one_key_execute_once(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.app("test").await;
    for round in 0..3 {
        let idem = format!("race-{round}");
        let results =
            futures::future::join_all((0..10).map(|_| create(&s, &a.admin, &idem, "Race"))).await;
        let executed = results
            .iter()
            .filter(|r| {
                r.status == StatusCode::CREATED && r.header("idempotent-replayed").is_none()
            })
            .count();
        assert_eq!(
            executed,
            1,
            "round {round}: {:?}",
            results.iter().map(|r| r.status).collect::<Vec<_>>()
        );
        for r in &results {
            assert!(
                r.status == StatusCode::CREATED
                    || (r.status == StatusCode::CONFLICT
                        && r.error().1 == "idempotency_key_in_use"),
                "{}",
                r.body
            );
        }
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM products").await, 3);
}

async fn keys_hold_across_restarts_and_two_processes(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let mut s = Server::start(&db).await;
    let a = s.app("test").await;
    let first = create(&s, &a.admin, "k", "Tea").await;
    s.restart().await;
    let again = create(&s, &a.admin, "k", "Tea").await;
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(again.json["id"], first.json["id"]);

    // A second node on the same database sees the same keys, and of concurrent
    // requests spread over both nodes exactly one executes.
    let s2 = Server::start(&db).await;
    let r = create(&s2, &a.admin, "k", "Tea").await;
    assert_eq!(r.header("idempotent-replayed").as_deref(), Some("true"));
    for round in 0..3 {
        let idem = format!("two-nodes-{round}");
        let futs = (0..10).map(|i| {
            let node = if i % 2 == 0 { &s } else { &s2 };
            create(node, &a.admin, &idem, "Both")
        });
        let results = futures::future::join_all(futs).await;
        let executed = results
            .iter()
            .filter(|r| {
                r.status == StatusCode::CREATED && r.header("idempotent-replayed").is_none()
            })
            .count();
        assert_eq!(executed, 1);
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM products").await, 4);
}

async fn expired_keys_are_removed_by_the_worker(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start_with(
        &db,
        &[
            ("PAYBRIDGE_IDEMPOTENCY_TTL", "1"),
            ("PAYBRIDGE_HOUSEKEEPING_INTERVAL", "1"),
        ],
    )
    .await;
    let a = s.app("test").await;
    create(&s, &a.admin, "short-lived", "Tea").await;
    assert_eq!(db.scalar("SELECT COUNT(*) FROM idempotency_keys").await, 1);
    let mut left = 1;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        left = db.scalar("SELECT COUNT(*) FROM idempotency_keys").await;
        if left == 0 {
            break;
        }
    }
    assert_eq!(left, 0, "expired keys were not removed");
    // The key is free again: the same key with another body runs.
    let r = create(&s, &a.admin, "short-lived", "Other").await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("idempotent-replayed"), None);
}
