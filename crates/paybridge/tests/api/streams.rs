//! Live status over server-sent events, resumed with `Last-Event-ID`; the customer's
//! payment log.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{AppKeys, Backend, Server, Sse, TestDb};

paybridge_testkit::on_both!(
    an_order_stream_shows_payment_succeeded_and_resumes_without_loss_or_repeats,
    the_app_stream_follows_every_event_and_checks_keys,
    the_customer_log_is_newest_first,
    idle_streams_get_keep_alives_and_end_on_shutdown,
);

fn ids(v: &[(String, Value)]) -> Vec<String> {
    v.iter().map(|m| m.0.clone()).collect()
}

/// The order's events as `GET /v1/events` has them, oldest first.
async fn order_event_ids(s: &Server, admin: &str, order: &str) -> Vec<String> {
    event_ids(s, admin, &format!("order={order}&")).await
}

/// The app's events (those `filter`, a query string ending in `&`, selects) as
/// `GET /v1/events` has them, oldest first.
async fn event_ids(s: &Server, admin: &str, filter: &str) -> Vec<String> {
    let r = s.get(&format!("/v1/events?{filter}limit=100"), admin).await;
    let mut v: Vec<String> = r.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    v.reverse();
    v
}

/// A checkout of a kettle with the publishable key: the checkout, its order's id, and
/// the path of the order's stream with its client secret.
async fn kettle_order(s: &Server, a: &AppKeys) -> (Value, String, String) {
    let product = s.product(&a.admin, "Kettle", 4200, "eur").await;
    let cs = s.checkout(&a.publishable, &product, 1, json!({})).await;
    let order = cs["order"].as_str().unwrap().to_owned();
    let secret = cs["client_secret"].as_str().unwrap();
    let path = format!("/v1/orders/{order}/stream?client_secret={secret}");
    (cs, order, path)
}

async fn an_order_stream_shows_payment_succeeded_and_resumes_without_loss_or_repeats(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start_with(&db, &[("PAYBRIDGE_SANDBOX_WEBHOOK_DELAY_MS", "300")]).await;
    let a = s.sandbox_app().await;
    let (cs, order, path) = kettle_order(&s, &a).await;

    // The publishable key needs the order's client secret.
    let wrong = s
        .get(
            &format!("/v1/orders/{order}/stream?client_secret=nope"),
            &a.publishable,
        )
        .await;
    assert_eq!(wrong.status, StatusCode::NOT_FOUND);

    let mut stream = Sse::open(&s, &path, &a.publishable, None).await;
    let r = s
        .complete_checkout(&a.publishable, &cs, "4242424242424242")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut seen = match stream.try_until_type("payment.succeeded", 15).await {
        Ok(seen) => seen,
        Err(why) => {
            // What the server has, to tell a stream that missed an event from an
            // event never made.
            let events = s.get(&format!("/v1/events?order={order}"), &a.admin).await;
            let provider = s.get("/v1/provider_events", &a.admin).await;
            let o = s.get(&format!("/v1/orders/{order}"), &a.admin).await;
            panic!(
                "{why}\nthe order's events: {}\nprovider events: {}\nthe order: {}",
                events.body, provider.body, o.body
            );
        }
    };
    let succeeded = seen.last().unwrap().1.clone();
    assert_eq!(succeeded["data"]["object"]["status"], "succeeded");
    assert_eq!(succeeded["data"]["object"]["order"], order.as_str());
    if !seen.iter().any(|m| m.1["type"] == "order.paid") {
        seen.extend(stream.until_type("order.paid", 5).await);
    }
    drop(stream);

    // While nobody watches, the order is refunded in two parts.
    let payment = succeeded["data"]["object"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for amount in [1000, 3200] {
        let r = s
            .post(
                "/v1/refunds",
                &a.admin,
                json!({"payment": payment, "amount": amount}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    s.until(&format!("/v1/orders/{order}"), &a.server, |o| {
        o["status"] == "refunded"
    })
    .await;

    // Resuming from the last event seen sends exactly the rest.
    let last = seen.last().unwrap().0.clone();
    let mut resumed = Sse::open(&s, &path, &a.publishable, Some(&last)).await;
    let mut rest = resumed.until_type("order.refunded", 10).await;
    while let Some(m) = resumed.next(1).await {
        rest.push(m);
    }
    let mut all = ids(&seen);
    all.extend(ids(&rest));
    let expected = order_event_ids(&s, &a.admin, &order).await;
    assert_eq!(all, expected, "nothing lost, nothing repeated, in order");
    assert!(rest.iter().all(|m| !ids(&seen).contains(&m.0)));

    // Without Last-Event-ID an order stream starts with the order's whole history.
    let mut fresh = Sse::open(&s, &path, &a.publishable, None).await;
    let mut history = Vec::new();
    while let Some(m) = fresh.next(1).await {
        history.push(m);
    }
    assert_eq!(ids(&history), expected);
    // An unknown Last-Event-ID is a clear 400, not a silent restart.
    let r = s
        .call_with(
            reqwest::Method::GET,
            &path,
            Some(&a.publishable),
            None,
            &[("last-event-id", "event_unknown")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error().2.as_deref(), Some("last_event_id"));
}

async fn the_app_stream_follows_every_event_and_checks_keys(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let other = s.sandbox_app().await;
    assert_eq!(
        s.get("/v1/events/stream", &a.publishable).await.status,
        StatusCode::FORBIDDEN
    );
    let mut mine = Sse::open(&s, "/v1/events/stream", &a.server, None).await;
    let mut theirs = Sse::open(&s, "/v1/events/stream", &other.admin, None).await;
    for amount in [1100, 1200, 1300] {
        crate::refunds::paid(&s, &a, amount).await;
    }
    // Three payments make at least six events (more when a worker adds one, such as a
    // checkout's completion booked after its payment): the stream must carry every
    // event the list has, in the list's order.
    let mut got = mine.take(6, 10).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let expected = event_ids(&s, &a.admin, "").await;
    got.extend(mine.take(expected.len() - got.len(), 10).await);
    assert_eq!(ids(&got), expected);
    assert!(
        theirs.next(1).await.is_none(),
        "another app's events never show"
    );

    // Resume from the first: all the others, then live ones.
    let mut again = Sse::open(&s, "/v1/events/stream", &a.admin, Some(&got[0].0)).await;
    let mut replay = Vec::new();
    for _ in 1..expected.len() {
        replay.push(again.next(5).await.expect("replayed"));
    }
    assert_eq!(ids(&replay), expected[1..].to_vec());
    crate::refunds::paid(&s, &a, 1400).await;
    let live = again.next(10).await.expect("live after replay");
    assert!(!expected.contains(&live.0));
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn idle_streams_get_keep_alives_and_end_on_shutdown(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let mut s = Server::start_with(&db, &[("PAYBRIDGE_STREAM_KEEP_ALIVE", "1")]).await;
    let a = s.sandbox_app().await;
    let mut idle = Sse::open(&s, "/v1/events/stream", &a.admin, None).await;
    assert!(idle.next(3).await.is_none(), "no events");
    assert!(idle.comments >= 2, "{} keep-alives in 3 s", idle.comments);
    // SIGTERM is not held up by the open stream.
    let started = std::time::Instant::now();
    assert!(s.terminate(), "clean exit");
    assert!(started.elapsed() < Duration::from_secs(5));
}

async fn the_customer_log_is_newest_first(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let other = s.sandbox_app().await;
    let p1 = crate::refunds::paid(&s, &a, 500).await;
    let customer = p1["customer"].as_str().unwrap().to_owned();
    let r = s
        .post(
            "/v1/refunds",
            &a.admin,
            json!({"payment": p1["id"], "amount": 200}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let p2 = crate::refunds::paid(&s, &a, 800).await; // another customer's
    let log = s
        .until(
            &format!("/v1/customers/{customer}/events"),
            &a.server,
            |j| {
                j["data"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|e| e["type"] == "refund.succeeded"))
            },
        )
        .await;
    let data = log["data"].as_array().unwrap();
    let types: Vec<&str> = data.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let pos = |t: &str| {
        types
            .iter()
            .position(|x| *x == t)
            .unwrap_or_else(|| panic!("no {t}: {types:?}"))
    };
    assert!(
        pos("refund.succeeded") < pos("payment.succeeded"),
        "newest first: {types:?}"
    );
    assert!(
        pos("order.partially_refunded") < pos("order.paid"),
        "newest first: {types:?}"
    );
    let created: Vec<i64> = data
        .iter()
        .map(|e| e["created"].as_i64().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]));
    let other_payment = p2["id"].as_str().unwrap();
    assert!(data.iter().all(|e| !e.to_string().contains(other_payment)));
    let same = s
        .get(
            &format!("/v1/events?customer={customer}&limit=100"),
            &a.admin,
        )
        .await;
    assert_eq!(same.json["data"], log["data"]);
    // Paging and scoping.
    let page = s
        .get(
            &format!("/v1/customers/{customer}/events?limit=1"),
            &a.admin,
        )
        .await;
    assert_eq!(page.json["data"].as_array().unwrap().len(), 1);
    assert_eq!(page.json["has_more"], true);
    assert_eq!(
        s.get(&format!("/v1/customers/{customer}/events"), &other.admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get(&format!("/v1/customers/{customer}/events"), &a.publishable)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

/// A transaction in the server's database holding a transaction id, as paybridge's own
/// hold one before their first `seq` (`events::append_many`): no horizon read while it
/// runs settles before it ends.
async fn transaction_with_id(pool: &sqlx::PgPool) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()::text")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

/// PostgreSQL: a transaction that took its `seq` first but commits seconds after later
/// events still reaches a live stream, before them in `seq` order, and a resume from
/// the last event misses nothing. (The hub once waited a fixed second for such a gap,
/// then went on without it: the event never reached a stream.)
#[tokio::test]
async fn postgres_an_event_that_commits_late_still_reaches_the_stream() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let mut live = Sse::open(&s, "/v1/events/stream", &a.admin, None).await;

    // A slow transaction takes a `seq` the way paybridge's own do (a transaction id
    // first, then the insert), and holds it open.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let mut slow = transaction_with_id(&pool).await;
    sqlx::query(
        "INSERT INTO events (id, app_id, type, object_id, data, created) \
         VALUES ('event_late', $1, 'product.created', 'product_late', '{}', 0)",
    )
    .bind(&a.id)
    .execute(&mut *slow)
    .await
    .unwrap();
    // Later events commit meanwhile (a paid payment makes several).
    crate::refunds::paid(&s, &a, 1500).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    slow.commit().await.unwrap();

    let expected: Vec<String> = {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM events WHERE app_id = $1 ORDER BY seq")
                .bind(&a.id)
                .fetch_all(&pool)
                .await
                .unwrap();
        rows.into_iter().map(|r| r.0).collect()
    };
    assert_eq!(expected[0], "event_late", "it took the first seq");
    let got = live.take(expected.len(), 10).await;
    assert_eq!(ids(&got), expected, "every event, in seq order");

    // A resume from the late event replays the rest.
    let mut again = Sse::open(&s, "/v1/events/stream", &a.admin, Some("event_late")).await;
    let mut replay = Vec::new();
    for _ in 1..expected.len() {
        replay.push(again.next(5).await.expect("replayed"));
    }
    assert_eq!(ids(&replay), expected[1..].to_vec());
}

/// PostgreSQL: a stream opened before the node's hub follows the events table (it
/// starts at its first settled horizon, which a transaction already running holds
/// back) is answered once the hub follows, and misses nothing: an order stream gets its
/// order's whole history, an app stream what comes after its answer. A stream once took
/// the hub's mark before the hub had one (0), went live, and never got what was
/// committed before the hub's start: CI's flaky "no payment.succeeded on the stream;
/// got []".
#[tokio::test]
async fn postgres_streams_opened_before_the_hub_follows_the_table_miss_nothing() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    // A transaction with an id, running in the server's database before it starts:
    // until it ends no horizon settles, so the hub cannot start following.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let early = transaction_with_id(&pool).await;

    let s = Server::start(&db).await;
    let a = s.sandbox_app().await;
    let (cs, order, path) = kettle_order(&s, &a).await;
    let order_open = Sse::open(&s, &path, &a.publishable, None);
    let app_open = Sse::open(&s, "/v1/events/stream", &a.admin, None);
    tokio::pin!(order_open, app_open);
    let wait = Duration::from_millis(500);
    assert!(
        tokio::time::timeout(wait, &mut order_open).await.is_err()
            && tokio::time::timeout(wait, &mut app_open).await.is_err(),
        "a stream is answered only once the hub follows the table"
    );
    // The order is paid, its events committed, while the hub still waits.
    let r = s
        .complete_checkout(&a.publishable, &cs, "4242424242424242")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    s.until(&format!("/v1/orders/{order}"), &a.server, |o| {
        o["status"] == "paid"
    })
    .await;
    let history = order_event_ids(&s, &a.admin, &order).await;
    assert!(!history.is_empty(), "the payment made events");
    early.commit().await.unwrap();

    let mut order_stream = order_open.await;
    let got = order_stream.take(history.len(), 10).await;
    assert_eq!(ids(&got), history, "the order's whole history, in order");
    // The app stream starts from its answer (the hub's mark then): it gets every event
    // of a payment made after it, in order. (Others may come first: workers add events,
    // such as a checkout's completion booked from its webhook, at any moment, and the
    // mark may lag what is visible by a transaction.)
    let mut app_stream = app_open.await;
    let second = crate::refunds::paid(&s, &a, 1500).await;
    let second = order_event_ids(&s, &a.admin, second["order"].as_str().unwrap()).await;
    assert!(!second.is_empty(), "the second payment made events");
    let mut got = Vec::new();
    while !second.iter().all(|id| got.contains(id)) {
        match app_stream.next(10).await {
            Some(m) => got.push(m.0),
            None => {
                panic!("the app stream sent {got:?}; the second payment's events are {second:?}")
            }
        }
    }
    let in_order: Vec<&String> = got.iter().filter(|id| second.contains(id)).collect();
    assert_eq!(in_order, second.iter().collect::<Vec<_>>(), "in order");
}
