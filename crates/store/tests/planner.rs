//! A table never analyzed gets PostgreSQL's planner statistics once it has rows
//! (`paybridge_store::planner`): before, a payment looked up by its id was planned as a
//! walk over every payment of its app, and each pooled connection kept that plan.

use std::collections::HashSet;
use std::time::Duration;

use paybridge_store::{payments, planner, Db, DbOptions};
use paybridge_testkit::{Backend, TestDb};
use sqlx::{Connection, PgConnection};

/// How PostgreSQL plans a pooled connection's lookup of a payment by its id once the
/// plan is cached (a generic plan): the lines of `EXPLAIN`.
async fn lookup_plan(url: &str) -> String {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    sqlx::query("SET plan_cache_mode = force_generic_plan")
        .execute(&mut conn)
        .await
        .expect("set");
    sqlx::query("PREPARE lookup(text, text) AS SELECT id, order_id FROM payments WHERE app_id = $1 AND id = $2")
        .execute(&mut conn)
        .await
        .expect("prepare");
    let lines: Vec<String> = sqlx::query_scalar("EXPLAIN EXECUTE lookup('app_1', 'pay_7')")
        .fetch_all(&mut conn)
        .await
        .expect("explain");
    let _ = conn.close().await;
    lines.join("\n")
}

/// Whether the plan finds the row by its id through an index, rather than filtering
/// the rows an index gave for the app.
fn found_by_id(plan: &str) -> bool {
    plan.lines()
        .any(|l| l.contains("Index Cond") && l.contains("(id = $2)"))
}

/// A pool on the test's database, migrated.
async fn open(t: &TestDb) -> Db {
    let db = Db::connect(&t.url, DbOptions::default())
        .await
        .expect("connect");
    db.migrate().await.expect("migrate");
    db
}

/// 600 orders and payments of one app (`pay_N` of `ord_N`, its intent `pi_N`),
/// written as a pooled connection would, then
/// their activity counts flushed (a backend reports them when it goes idle).
/// Autovacuum is kept off the two tables, so that only the code under test analyzes
/// them.
async fn fill(url: &str) {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    for sql in [
        "ALTER TABLE orders SET (autovacuum_enabled = false)",
        "ALTER TABLE payments SET (autovacuum_enabled = false)",
        "INSERT INTO apps (id, name, environment, created) VALUES ('app_1', 'Shop', 'test', 0)",
        "INSERT INTO orders (id, app_id, currency, amount_total, amount_paid, amount_refunded, \
         status, line_items, metadata, client_secret, created, updated) \
         SELECT 'ord_' || i, 'app_1', 'usd', 2500, 0, 0, 'open', '[]', '{}', 'cs', i, i \
         FROM generate_series(1, 600) i",
        "INSERT INTO payments (id, app_id, order_id, method, capture_method, provider, \
         lifecycle, status, amount, currency, metadata, created, updated) \
         SELECT 'pay_' || i, 'app_1', 'ord_' || i, 'checkout', 'automatic', 'sandbox', \
         'initiated', 'pending', 2500, 'usd', '{}', i, i FROM generate_series(1, 600) i",
        "UPDATE payments SET provider_payment_intent = 'pi_' || substr(id, 5)",
        "SELECT pg_stat_force_next_flush()",
    ] {
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
    }
    let _ = conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_never_analyzed_is_analyzed_once_it_has_rows_and_an_id_lookup_then_uses_the_id() {
    let Some(t) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let db = open(&t).await;
    let mut done = HashSet::new();
    assert!(
        planner::analyze_new_tables(&db, &mut done)
            .await
            .expect("analyze")
            .is_empty(),
        "nothing has changed yet"
    );

    fill(&t.url).await;

    let before = lookup_plan(&t.url).await;
    assert!(
        !found_by_id(&before),
        "without statistics PostgreSQL 15 walks the app's payments for an id; if it now \
         plans this well, the step may no longer be needed:\n{before}"
    );

    let analyzed = analyze_some(&db, &mut done).await;
    assert!(
        analyzed.iter().any(|t| t == "payments") && analyzed.iter().any(|t| t == "orders"),
        "analyzed: {analyzed:?}"
    );
    assert!(
        !analyzed.iter().any(|t| t == "refunds"),
        "a table with fewer changes is not analyzed: {analyzed:?}"
    );
    let after = lookup_plan(&t.url).await;
    assert!(
        found_by_id(&after),
        "with statistics the lookup should use the id:\n{after}"
    );
    assert!(
        planner::analyze_new_tables(&db, &mut done)
            .await
            .expect("analyze")
            .is_empty(),
        "a table is analyzed once"
    );
    db.close().await;
}

#[tokio::test]
async fn sqlite_needs_no_statistics() {
    let t = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let db = open(&t).await;
    let mut done = HashSet::new();
    assert!(planner::analyze_new_tables(&db, &mut done)
        .await
        .expect("analyze")
        .is_empty());
    db.close().await;
}

/// Analyzes with `db` until it reports some table (the activity counts lag).
async fn analyze_some(db: &Db, done: &mut HashSet<String>) -> Vec<String> {
    for _ in 0..150 {
        let analyzed = planner::analyze_new_tables(db, done)
            .await
            .expect("analyze");
        if !analyzed.is_empty() {
            return analyzed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Vec::new()
}

/// A role that does not own the tables may not analyze them: PostgreSQL warns and
/// skips them, and their statistics stay missing. Each is tried once, not every tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_the_role_may_not_analyze_is_tried_once() {
    let Some(t) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let db = open(&t).await;
    db.close().await;
    fill(&t.url).await;
    let role = format!("pbt_role_{}", paybridge_testkit::random_suffix());
    t.execute(&format!("CREATE ROLE {role} LOGIN PASSWORD 'pw'"))
        .await;
    // The role is the cluster's, not the database's: it is dropped however the checks
    // end, and only then is a failed check's panic passed on.
    let (scheme, rest) = t.url.split_once("://").expect("a URL");
    let (_, host) = rest.rsplit_once('@').expect("a user in the URL");
    let url = format!("{scheme}://{role}:pw@{host}");
    let checks = tokio::spawn(async move {
        let other = Db::connect(&url, DbOptions::default())
            .await
            .expect("connect as the role");
        let mut done = HashSet::new();
        // PostgreSQL skips each with a warning, so they are reported as analyzed.
        let tried = analyze_some(&other, &mut done).await;
        let again = planner::analyze_new_tables(&other, &mut done)
            .await
            .expect("analyze");
        other.close().await;
        (tried, again)
    })
    .await;
    let analyzed_by_owner = t
        .scalar(
            "SELECT COUNT(*) FROM pg_stat_user_tables \
             WHERE relname = 'payments' AND last_analyze IS NOT NULL",
        )
        .await;
    t.execute(&format!("DROP ROLE {role}")).await;
    let (tried, again) = match checks {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    assert!(tried.iter().any(|t| t == "payments"), "{tried:?}");
    assert_eq!(analyzed_by_owner, 0, "the role may not analyze payments");
    assert!(again.is_empty(), "tried once, not again: {again:?}");
}

/// A webhook batch's payments are locked through indexes on a small, analyzed table (a
/// new shop's 600 payments), with the generic plan a pooled connection caches from its
/// sixth run: the pool's connections plan with `random_page_cost` 1.1
/// (`db::POSTGRES_SESSION`). With PostgreSQL's built-in 4 the same lock reads the
/// app's every payment. A value the database sets stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_batchs_payments_are_locked_through_indexes_not_by_reading_every_payment() {
    let Some(t) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let db = open(&t).await;
    fill(&t.url).await;
    for sql in ["ANALYZE orders", "ANALYZE payments"] {
        t.execute(sql).await;
    }
    let ids: Vec<String> = (1..=7).map(|i| format!("pay_{}", i * 80)).collect();
    let intents: Vec<String> = (1..=7).map(|i| format!("pi_{}", i * 80 + 3)).collect();
    // The payments the lock returns, and the sequential and index scans of `payments`
    // it made, in a transaction of the pool's with `setting` run first.
    let lock = |setting: &'static str| {
        let (db, ids, intents) = (&db, &ids, &intents);
        async move {
            let mut tx = db.begin().await.expect("begin");
            // A pooled connection keeps its prepared statements and their plans, and a
            // setting changed since does not replan them: each measurement plans anew.
            for s in [
                "DISCARD PLANS",
                "SET LOCAL plan_cache_mode = force_generic_plan",
                setting,
            ] {
                sqlx::query(s).execute(&mut *tx).await.expect(s);
            }
            let before = payment_scans(&mut tx).await;
            let locked = payments::lock_many(&mut tx, "app_1", ids, intents, &[])
                .await
                .expect("lock");
            let after = payment_scans(&mut tx).await;
            let (seq, idx) = (after.0 - before.0, after.1 - before.1);
            (locked.len(), seq, idx)
        }
    };
    // Every connection of the pool first plans the lock with the session's setting
    // (as a server that has run a while has), so the measurement with the built-in
    // cost is made on a connection that holds that plan already.
    for _ in 0..20 {
        let _ = lock("SELECT 1").await;
    }
    let (locked, seq, idx) = lock("SELECT 1").await;
    assert_eq!(
        locked, 14,
        "7 payments by id and 7 by intent, each of its own order"
    );
    assert_eq!(seq, 0, "no payment read but through an index");
    assert!(idx > 0);
    let (locked, seq, _) = lock("SET LOCAL random_page_cost = 4").await;
    assert_eq!(locked, 14);
    assert!(
        seq > 0,
        "with the built-in cost PostgreSQL 15 reads every payment; if it no longer does, \
         the session setting may not be needed"
    );
    db.close().await;

    let name = t
        .url
        .rsplit('/')
        .next()
        .expect("a database name")
        .to_owned();
    t.execute(&format!(
        "ALTER DATABASE \"{name}\" SET random_page_cost = 2.5"
    ))
    .await;
    let db = open(&t).await;
    let cost: String = sqlx::query_scalar("SHOW random_page_cost")
        .fetch_one(&mut *db.begin().await.expect("begin"))
        .await
        .expect("show");
    assert_eq!(cost, "2.5", "the database's value stands");
    db.close().await;
}

/// The sequential and index scans of `payments` this backend has not reported yet: the
/// view is named for the transaction, but in PostgreSQL 15 it also holds the counts of
/// earlier transactions not flushed yet, so a caller takes the difference of two.
async fn payment_scans(tx: &mut paybridge_store::Tx) -> (i64, i64) {
    sqlx::query_as(
        "SELECT seq_scan, COALESCE(idx_scan, 0) FROM pg_stat_xact_user_tables \
         WHERE relname = 'payments'",
    )
    .fetch_one(&mut **tx)
    .await
    .expect("scans")
}
