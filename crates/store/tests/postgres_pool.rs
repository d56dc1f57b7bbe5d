//! PostgreSQL's pool pings only a connection that has been idle a while
//! (`DbOptions::ping_after_idle`), not every one it hands out. These tests kill the
//! pooled connection's server process, as a restarted server does, and show what the
//! next caller gets: with the ping, a working connection; without it (the connection
//! was in use a moment ago), one failed statement and then a working connection.

use std::time::Duration;

use paybridge_store::{Db, DbOptions};
use paybridge_testkit::{Backend, TestDb};

/// A pool of one connection, so the next caller gets the one that was killed.
async fn one_connection(t: &TestDb, ping_after_idle: Duration) -> Db {
    Db::connect(
        &t.url,
        DbOptions {
            max_connections: 1,
            ping_after_idle,
            ..DbOptions::default()
        },
    )
    .await
    .expect("connect")
}

async fn backend_pid(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT CAST(pg_backend_pid() AS BIGINT)")
        .fetch_one(db.reader())
        .await
}

/// Ends the server process behind `pid`, from a connection of another pool.
async fn kill(t: &TestDb, pid: i64) {
    let other = Db::connect(&t.url, DbOptions::default())
        .await
        .expect("connect");
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend(CAST($1 AS INTEGER))")
        .bind(pid)
        .fetch_one(other.reader())
        .await
        .expect("terminate");
    assert!(ended, "no server process {pid}");
    // The process is gone once it no longer shows in pg_stat_activity.
    for _ in 0..100 {
        let alive: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = CAST($1 AS INTEGER)",
        )
        .bind(pid)
        .fetch_one(other.reader())
        .await
        .expect("pg_stat_activity");
        if alive == 0 {
            other.close().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("server process {pid} did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_idle_long_enough_is_pinged_and_replaced_when_its_server_process_is_gone() {
    let Some(t) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let db = one_connection(&t, Duration::ZERO).await;
    let before = backend_pid(&db).await.expect("first query");
    kill(&t, before).await;
    let after = backend_pid(&db)
        .await
        .expect("the ping found the dead connection and a new one answered");
    assert_ne!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_in_recent_use_is_not_pinged_and_a_dead_one_fails_once() {
    let Some(t) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let db = one_connection(&t, Duration::from_secs(3600)).await;
    let before = backend_pid(&db).await.expect("first query");
    kill(&t, before).await;
    // Not pinged: the caller gets the dead connection, and its statement fails.
    assert!(backend_pid(&db).await.is_err());
    // sqlx pings a connection as it takes it back, found it dead and closed it.
    let mut after = None;
    for _ in 0..50 {
        if let Ok(pid) = backend_pid(&db).await {
            after = Some(pid);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = after.expect("the pool opened a new connection");
    assert_ne!(before, after);
}
