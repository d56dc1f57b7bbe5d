//! Several `paybridge serve` processes on one PostgreSQL: each callback attempt made
//! by one node, streams fed with every node's events, and the cluster-wide workers on
//! one node at a time, taken over when it dies.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

use crate::common::{AppKeys, Backend, Receiver, Server, Sse, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_deliver_a_thousand_events_each_once() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let n1 = Server::start_with(&db, &[("PAYBRIDGE_NODE", "node-1")]).await;
    let n2 = Server::start_with(&db, &[("PAYBRIDGE_NODE", "node-2")]).await;
    let a = n1.sandbox_app().await;
    let r = Receiver::start().await;
    let e = n1
        .post("/v1/callback_endpoints", &a.admin, json!({"url": r.url()}))
        .await;
    r.control(json!({"secrets": [e.json["secret"]]})).await;
    // A stream on node 2 sees what node 1 writes too.
    let mut stream = Sse::open(&n2, "/v1/events/stream", &a.admin, None).await;

    // 500 card payments, half through each node, 16 at a time: two events each.
    let nodes = [&n1, &n2];
    let payments = futures::stream::iter(0..500)
        .map(|i| pay(nodes[i % 2], &a, 100 + i as i64))
        .buffer_unordered(16);
    let paid: Vec<()> = payments.collect().await;
    assert_eq!(paid.len(), 500);

    let events = all_event_ids(&n1, &a).await;
    assert_eq!(events.len(), 1000);
    let got = r.until(60, |g| g.len() >= 1000).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = if got.len() == 1000 {
        r.received().await
    } else {
        got
    };
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for g in &got {
        assert_eq!(g["verified"], true);
        assert_eq!(g["status"], 200);
        *per_id
            .entry(g["webhook_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        per_id.keys().cloned().collect::<HashSet<_>>(),
        events,
        "none missed"
    );
    let twice: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    // One attempt per delivery, and both nodes made some.
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM delivery_attempts").await,
        1000
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded' AND attempts = 1")
            .await,
        1000
    );
    let by_node = db
        .scalar("SELECT COUNT(DISTINCT node) FROM delivery_attempts")
        .await;
    assert_eq!(by_node, 2, "both nodes delivered");

    // The stream on node 2 carried all 1000, in order, once each.
    let mut streamed = Vec::new();
    while streamed.len() < 1000 {
        match stream.next(10).await {
            Some((id, _)) => streamed.push(id),
            None => break,
        }
    }
    assert_eq!(streamed.len(), 1000);
    assert_eq!(streamed.iter().cloned().collect::<HashSet<_>>(), events);
    let order = db_order(&db).await;
    assert_eq!(streamed, order, "in the order they were written");
}

async fn pay(s: &Server, a: &AppKeys, amount: i64) {
    crate::refunds::paid(s, a, amount).await;
}

async fn all_event_ids(s: &Server, a: &AppKeys) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut after = String::new();
    loop {
        let r = s
            .get(&format!("/v1/events?limit=100{after}"), &a.admin)
            .await;
        let data = r.json["data"].as_array().unwrap().clone();
        for e in &data {
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

/// The events' ids in `seq` order.
async fn db_order(db: &TestDb) -> Vec<String> {
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let rows: Vec<(String,)> = sqlx::query_as("SELECT id FROM events ORDER BY seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    rows.into_iter().map(|r| r.0).collect()
}

async fn leads(s: &Server) -> Option<bool> {
    let text = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with("paybridge_cluster_leader "))?;
    Some(line.ends_with(" 1"))
}

/// Waits until exactly the expected nodes lead; returns how long it took.
async fn until_leaders(nodes: &[&Server], expected: &[bool], secs: u64) -> Duration {
    let start = Instant::now();
    loop {
        let mut now = Vec::new();
        for n in nodes {
            now.push(leads(n).await.unwrap_or(false));
        }
        if now == expected {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "leaders {now:?}, wanted {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_runs_the_cluster_work_and_another_takes_over() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let mut n1 = Server::start(&db).await;
    until_leaders(&[&n1], &[true], 10).await;
    let n2 = Server::start(&db).await;
    // Node 2 keeps trying, and does not lead while node 1 does.
    tokio::time::sleep(Duration::from_secs(4)).await;
    until_leaders(&[&n1, &n2], &[true, false], 1).await;
    assert!(!n2.logs().contains("now runs the cluster"));

    n1.kill9();
    let took = until_leaders(&[&n2], &[true], 15).await;
    eprintln!("node 2 took over {took:?} after node 1 died");
    assert!(took < Duration::from_secs(10), "took over in {took:?}");
    // The old leader comes back as a follower.
    n1.restart().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    until_leaders(&[&n1, &n2], &[false, true], 1).await;
}
