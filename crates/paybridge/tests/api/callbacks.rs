//! Callbacks to the app: every event delivered, signed per Standard Webhooks and
//! checked by the official `standardwebhooks` library in a Python receiver; retried on
//! failure with every attempt logged; redelivered by hand; kept across a `kill -9`;
//! endpoints that keep failing disabled; secrets rotated with an overlap.

use std::collections::{HashMap, HashSet};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{AppKeys, Backend, Receiver, Server, TestDb};
use crate::refunds::paid;

paybridge_testkit::on_both!(
    a_failing_receiver_is_retried_and_every_attempt_logged,
    retry_after_is_honoured,
    a_receiver_down_for_a_while_gets_everything_once_back,
    callbacks_survive_kill_9,
    manual_redelivery_keeps_the_webhook_id,
    an_endpoint_failing_too_long_is_disabled_and_the_app_told,
    a_rotated_secret_signs_beside_the_old_one_during_the_overlap,
    endpoints_are_validated_and_scoped_to_their_app,
);

/// Adds an endpoint for `events` pointing at `r`, and gives `r` its secret.
async fn endpoint(s: &Server, a: &AppKeys, r: &Receiver, events: Value) -> (String, String) {
    let e = s
        .post(
            "/v1/callback_endpoints",
            &a.admin,
            json!({"url": r.url(), "events": events}),
        )
        .await;
    assert_eq!(e.status, StatusCode::CREATED, "{}", e.body);
    let secret = e.json["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    r.control(json!({"secrets": [secret]})).await;
    (e.json["id"].as_str().unwrap().to_owned(), secret)
}

/// The ids of all the app's events (every one should reach a `*` endpoint).
async fn event_ids(s: &Server, a: &AppKeys) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut after = String::new();
    loop {
        let r = s
            .get(&format!("/v1/events?limit=100{after}"), &a.admin)
            .await;
        let data = r.json["data"].as_array().unwrap();
        for e in data {
            ids.insert(e["id"].as_str().unwrap().to_owned());
        }
        if r.json["has_more"] != true {
            return ids;
        }
        after = format!(
            "&starting_after={}",
            data.last().unwrap()["id"].as_str().unwrap()
        );
    }
}

/// webhook-id → how many deliveries the receiver accepted (answered 200).
fn accepted(got: &[Value]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for g in got.iter().filter(|g| g["status"] == 200) {
        *m.entry(g["webhook_id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    m
}

fn all_verified(got: &[Value]) {
    for g in got {
        assert_eq!(g["verified"], true, "not verified: {g}");
        assert_eq!(g["webhook_id"], g["event_id"], "webhook-id is the event id");
    }
}

async fn a_failing_receiver_is_retried_and_every_attempt_logged(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start_with(&db, &[("PAYBRIDGE_CALLBACK_RETRY_SCHEDULE", "0,1,1,1")]).await;
    let a = s.sandbox_app().await;
    let r = Receiver::start().await;
    endpoint(&s, &a, &r, json!(["payment.succeeded"])).await;
    r.control(json!({"fail_first": 2, "fail_status": 503}))
        .await;

    let p = paid(&s, &a, 1500).await;
    let got = r.until(20, |g| g.iter().any(|x| x["status"] == 200)).await;
    all_verified(&got);
    // Only what the endpoint asked for, three attempts of one event: 503, 503, 200.
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(got.iter().all(|g| g["type"] == "payment.succeeded"));
    assert!(got.iter().all(|g| g["object_id"] == p["id"]));
    let statuses: Vec<i64> = got.iter().map(|g| g["status"].as_i64().unwrap()).collect();
    assert_eq!(statuses, [503, 503, 200]);
    // About a second apart (the schedule, ±20 % jitter).
    let at: Vec<f64> = got.iter().map(|g| g["at"].as_f64().unwrap()).collect();
    assert!(at[1] - at[0] >= 0.75 && at[2] - at[1] >= 0.75, "{at:?}");

    let event = got[0]["webhook_id"].as_str().unwrap();
    // The receiver has the third attempt a moment before paybridge has recorded it: wait
    // until the delivery is settled, then check how.
    let list = s
        .until(&format!("/v1/deliveries?event={event}"), &a.admin, |j| {
            j["data"][0]["status"] != "pending"
        })
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let d = &list["data"][0];
    assert_eq!(d["status"], "succeeded");
    assert_eq!(d["attempts"], 3);
    let one = s
        .get(
            &format!("/v1/deliveries/{}", d["id"].as_str().unwrap()),
            &a.admin,
        )
        .await;
    let log = one.json["attempt_log"].as_array().unwrap();
    let codes: Vec<i64> = log
        .iter()
        .map(|x| x["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [503, 503, 200]);
    for x in log {
        assert!(x["latency_ms"].as_i64().unwrap() >= 0);
        assert!(x["response_snippet"].as_str().unwrap().contains("attempt"));
        assert!(!x["node"].as_str().unwrap().is_empty());
    }
    assert!(log[0]["error"].as_str().unwrap().contains("503"));
    assert!(log[2]["error"].is_null());

    // A receiver that never recovers: the schedule runs out and the delivery fails.
    r.control(json!({"fail_all": true})).await;
    paid(&s, &a, 1600).await;
    let got = r
        .until(20, |g| g.iter().filter(|x| x["attempt"] == 4).count() == 1)
        .await;
    let last = got.last().unwrap()["webhook_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let d = s
        .until(&format!("/v1/deliveries?event={last}"), &a.admin, |j| {
            j["data"][0]["status"] == "failed"
        })
        .await;
    assert_eq!(
        d["data"][0]["attempts"], 4,
        "four entries in the schedule, four attempts"
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let n = r
        .received()
        .await
        .iter()
        .filter(|g| g["webhook_id"] == last.as_str())
        .count();
    assert_eq!(n, 4, "no fifth attempt");
}

async fn retry_after_is_honoured(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start_with(&db, &[("PAYBRIDGE_CALLBACK_RETRY_SCHEDULE", "0,1")]).await;
    let a = s.sandbox_app().await;
    let r = Receiver::start().await;
    endpoint(&s, &a, &r, json!(["order.paid"])).await;
    // 429 with Retry-After: 3 — longer than the schedule's 1 s, so it wins.
    r.control(json!({"fail_first": 1, "fail_status": 429, "retry_after": 3}))
        .await;
    paid(&s, &a, 1500).await;
    let got = r.until(15, |g| g.len() == 2).await;
    all_verified(&got);
    let gap = got[1]["at"].as_f64().unwrap() - got[0]["at"].as_f64().unwrap();
    assert!(gap >= 2.9, "waited {gap:.2} s, not the 3 s asked");
    assert_eq!(got[1]["status"], 200);
}

async fn a_receiver_down_for_a_while_gets_everything_once_back(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start_with(
        &db,
        &[(
            "PAYBRIDGE_CALLBACK_RETRY_SCHEDULE",
            "0,1,1,1,1,1,1,1,1,1,1,1,1,1,1",
        )],
    )
    .await;
    let a = s.sandbox_app().await;
    let mut r = Receiver::start().await;
    let (_, secret) = endpoint(&s, &a, &r, json!(["*"])).await;
    r.stop();
    for amount in [1000, 2000, 3000] {
        paid(&s, &a, amount).await;
    }
    // Down for a few seconds: attempts fail to connect and are logged as such.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let failing = s.get("/v1/deliveries?status=pending", &a.admin).await;
    let pending = failing.json["data"].as_array().unwrap();
    assert!(!pending.is_empty());
    assert!(pending.iter().all(|d| d["attempts"].as_i64().unwrap() >= 1));
    assert_eq!(pending[0]["last_error"], "could not connect");

    r.resume(json!({"secrets": [secret]})).await;
    let events = event_ids(&s, &a).await;
    assert!(events.len() >= 6, "two events per payment at least");
    let got = r.until(30, |g| accepted(g).len() == events.len()).await;
    all_verified(&got);
    let ok = accepted(&got);
    assert_eq!(ok.keys().cloned().collect::<HashSet<_>>(), events);
    assert!(ok.values().all(|n| *n == 1), "each delivered once: {ok:?}");
    // Attempts' results are written a moment after the receiver answers: wait for
    // the last to be recorded, then check nothing was sent again meanwhile.
    s.until("/v1/deliveries?status=pending", &a.admin, |j| {
        j["data"].as_array().is_some_and(|d| d.is_empty())
    })
    .await;
    let settled = accepted(&r.received().await);
    assert_eq!(
        settled, ok,
        "nothing delivered again once all were recorded"
    );
}

async fn callbacks_survive_kill_9(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    // Three seconds between attempts, so none is in flight when the process dies
    // (one in flight would be attempted again only when its 30 s lease ran out).
    let mut s = Server::start_with(
        &db,
        &[("PAYBRIDGE_CALLBACK_RETRY_SCHEDULE", "0,3,3,3,3,3,3,3,3,3")],
    )
    .await;
    let a = s.sandbox_app().await;
    let r = Receiver::start().await;
    endpoint(&s, &a, &r, json!(["*"])).await;
    r.control(json!({"fail_all": true})).await;
    for amount in [1000, 2000, 3000, 4000] {
        paid(&s, &a, amount).await;
    }
    let events = event_ids(&s, &a).await;
    // Every event's first attempt has failed: all are due again in three seconds.
    r.until(10, |g| g.len() == events.len()).await;
    // ... and has been recorded: a delivery whose attempt is not yet written stays
    // leased after the crash, and is tried again only when its 30 s lease runs out.
    let n = events.len();
    s.until("/v1/deliveries?limit=100", &a.admin, |j| {
        j["data"]
            .as_array()
            .is_some_and(|d| d.len() == n && d.iter().all(|x| x["attempts"].as_i64() >= Some(1)))
    })
    .await;
    s.kill9();
    // While paybridge is dead the receiver recovers; nothing is in flight any more.
    r.control(json!({"fail_all": false})).await;
    let before = r.received().await.len();
    s.restart().await;
    let got = r.until(30, |g| accepted(g).len() == events.len()).await;
    assert!(got.len() > before);
    all_verified(&got);
    let ok = accepted(&got);
    assert_eq!(ok.keys().cloned().collect::<HashSet<_>>(), events);
    assert!(ok.values().all(|n| *n == 1), "{ok:?}");
}

async fn manual_redelivery_keeps_the_webhook_id(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let other = s.sandbox_app().await;
    let r = Receiver::start().await;
    endpoint(&s, &a, &r, json!(["order.paid"])).await;
    paid(&s, &a, 700).await;
    let got = r.until(10, |g| g.len() == 1).await;
    let event = got[0]["webhook_id"].as_str().unwrap().to_owned();
    let list = s
        .get(&format!("/v1/deliveries?event={event}"), &a.admin)
        .await;
    let id = list.json["data"][0]["id"].as_str().unwrap().to_owned();

    // Another app cannot see or retry it; a server key may not retry.
    let path = format!("/v1/deliveries/{id}/retry");
    assert_eq!(
        s.post(&path, &other.admin, json!({})).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get(&format!("/v1/deliveries/{id}"), &other.admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.post(&path, &a.server, json!({})).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.post("/v1/deliveries/delivery_nope/retry", &a.admin, json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let again = s.post(&path, &a.admin, json!({})).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
    assert_eq!(again.json["status"], "pending");
    let got = r.until(10, |g| g.len() == 2).await;
    all_verified(&got);
    assert_eq!(
        got[1]["webhook_id"],
        event.as_str(),
        "the same webhook-id, so receivers can dedupe"
    );
    let d = s
        .until(&format!("/v1/deliveries/{id}"), &a.admin, |j| {
            j["status"] == "succeeded" && j["attempts"] == 2
        })
        .await;
    assert_eq!(d["attempt_log"].as_array().unwrap().len(), 2);
}

async fn an_endpoint_failing_too_long_is_disabled_and_the_app_told(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start_with(
        &db,
        &[
            ("PAYBRIDGE_CALLBACK_RETRY_SCHEDULE", "0,1,1,1,1,1,1,1,1,1"),
            ("PAYBRIDGE_CALLBACK_DISABLE_AFTER", "2"),
        ],
    )
    .await;
    let a = s.sandbox_app().await;
    let bad = Receiver::start().await;
    let good = Receiver::start().await;
    let (bad_id, _) = endpoint(&s, &a, &bad, json!(["*"])).await;
    endpoint(&s, &a, &good, json!(["callback_endpoint.disabled"])).await;
    bad.control(json!({"fail_all": true, "fail_status": 500}))
        .await;
    paid(&s, &a, 900).await;

    let ep = s
        .until(&format!("/v1/callback_endpoints/{bad_id}"), &a.admin, |j| {
            j["status"] == "disabled"
        })
        .await;
    assert!(ep["disabled_reason"].as_str().unwrap().contains("failing"));
    let told = good.until(10, |g| g.len() == 1).await;
    all_verified(&told);
    assert_eq!(told[0]["type"], "callback_endpoint.disabled");
    assert_eq!(told[0]["object_id"], bad_id.as_str());
    // Its pending deliveries stopped, and no more attempts are made.
    let pending = s
        .get(
            &format!("/v1/deliveries?endpoint={bad_id}&status=pending"),
            &a.admin,
        )
        .await;
    assert_eq!(pending.json["data"].as_array().unwrap().len(), 0);
    let n = bad.received().await.len();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(bad.received().await.len(), n);
    // A retry waits for it to be enabled; enabling forgets the failures.
    let some = s
        .get(
            &format!("/v1/callback_endpoints/{bad_id}/deliveries"),
            &a.admin,
        )
        .await;
    let d = some.json["data"][0]["id"].as_str().unwrap().to_owned();
    let r = s
        .post(&format!("/v1/deliveries/{d}/retry"), &a.admin, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error().1, "endpoint_not_enabled");
    let on = s
        .post(
            &format!("/v1/callback_endpoints/{bad_id}/enable"),
            &a.admin,
            json!({}),
        )
        .await;
    assert_eq!(on.json["status"], "enabled");
    assert!(on.json["failing_since"].is_null());
    bad.control(json!({"fail_all": false})).await;
    let r = s
        .post(&format!("/v1/deliveries/{d}/retry"), &a.admin, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    bad.until(10, |g| g.iter().any(|x| x["status"] == 200))
        .await;
}

async fn a_rotated_secret_signs_beside_the_old_one_during_the_overlap(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start_with(&db, &[("PAYBRIDGE_CALLBACK_RETRY_SCHEDULE", "0")]).await;
    let a = s.sandbox_app().await;
    let r = Receiver::start().await;
    let (id, old) = endpoint(&s, &a, &r, json!(["payment.succeeded"])).await;
    let rot = s
        .post(
            &format!("/v1/callback_endpoints/{id}/rotate_secret"),
            &a.admin,
            json!({"overlap_seconds": 3600}),
        )
        .await;
    assert_eq!(rot.status, StatusCode::OK, "{}", rot.body);
    let new = rot.json["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(rot.json["previous_secret_expires"].as_i64().is_some());
    // The secret is never shown again.
    let read = s
        .get(&format!("/v1/callback_endpoints/{id}"), &a.admin)
        .await;
    assert!(read.json.get("secret").is_none());
    assert!(!read.body.contains(&new) && !read.body.contains(&old));

    // During the overlap each delivery verifies with the old secret and with the new.
    r.control(json!({"secrets": [old, new]})).await;
    paid(&s, &a, 500).await;
    let got = r.until(10, |g| g.len() == 1).await;
    all_verified(&got);
    assert_eq!(got[0]["signatures"], 2);

    // Overlap ended: only the new secret signs.
    let rot2 = s
        .post(
            &format!("/v1/callback_endpoints/{id}/rotate_secret"),
            &a.admin,
            json!({"overlap_seconds": 0}),
        )
        .await;
    let newest = rot2.json["secret"].as_str().unwrap().to_owned();
    r.control(json!({"secrets": [new]})).await;
    paid(&s, &a, 600).await;
    let got = r.until(10, |g| g.len() == 2).await;
    assert_eq!(
        got[1]["verified"], false,
        "the replaced secret no longer verifies"
    );
    assert_eq!(got[1]["signatures"], 1);
    r.control(json!({"secrets": [newest]})).await;
    let redo = s
        .get(
            &format!(
                "/v1/deliveries?event={}",
                got[1]["webhook_id"].as_str().unwrap()
            ),
            &a.admin,
        )
        .await;
    let d = redo.json["data"][0]["id"].as_str().unwrap().to_owned();
    s.post(&format!("/v1/deliveries/{d}/retry"), &a.admin, json!({}))
        .await;
    let got = r.until(10, |g| g.len() == 3).await;
    assert_eq!(got[2]["verified"], true);
}

async fn endpoints_are_validated_and_scoped_to_their_app(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let other = s.sandbox_app().await;
    for (body, param) in [
        (json!({"url": "ftp://x.example/"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (
            json!({"url": "https://x.example/h", "events": []}),
            "events",
        ),
        (
            json!({"url": "https://x.example/h", "events": ["payment.nope"]}),
            "events[0]",
        ),
        (
            json!({"url": "https://x.example/h", "colour": "red"}),
            "colour",
        ),
    ] {
        let r = s
            .post("/v1/callback_endpoints", &a.admin, body.clone())
            .await;
        assert_eq!(r.status.as_u16() / 100, 4, "{body}: {}", r.body);
        assert_eq!(r.error().2.as_deref(), Some(param), "{body}: {}", r.body);
    }
    let count = db.scalar("SELECT COUNT(*) FROM callback_endpoints").await;
    assert_eq!(count, 0, "nothing stored by bad input");
    // Server and publishable keys cannot add endpoints.
    for k in [&a.server, &a.publishable] {
        let r = s
            .post(
                "/v1/callback_endpoints",
                k,
                json!({"url": "https://x.example/h"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    let e = s
        .post(
            "/v1/callback_endpoints",
            &a.admin,
            json!({"url": "https://x.example/h"}),
        )
        .await;
    assert_eq!(e.json["events"], json!(["*"]));
    let id = e.json["id"].as_str().unwrap();
    let secret = e.json["secret"].as_str().unwrap();
    assert!(
        !db.all_stored_text().await.contains(secret),
        "the secret is stored sealed"
    );
    for path in [
        format!("/v1/callback_endpoints/{id}"),
        format!("/v1/callback_endpoints/{id}/deliveries"),
    ] {
        assert_eq!(
            s.get(&path, &other.admin).await.status,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        s.delete(&format!("/v1/callback_endpoints/{id}"), &other.admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let list = s.get("/v1/callback_endpoints", &other.admin).await;
    assert_eq!(list.json["data"].as_array().unwrap().len(), 0);
    let del = s
        .delete(&format!("/v1/callback_endpoints/{id}"), &a.admin)
        .await;
    assert_eq!(del.json["deleted"], true);
    assert_eq!(
        s.get(&format!("/v1/callback_endpoints/{id}"), &a.admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}
