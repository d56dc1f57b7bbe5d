//! A table never analyzed gets PostgreSQL's planner statistics once it has rows
//! (`paybridge_store::planner`): before, a payment looked up by its id was planned as a
//! walk over every payment of its app, and each pooled connection kept that plan.

use std::time::Duration;

use paybridge_store::{planner, Db, DbOptions};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_never_analyzed_is_analyzed_once_it_has_rows_and_an_id_lookup_then_uses_the_id() {
    let Some(t) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let db = Db::connect(&t.url, DbOptions::default())
        .await
        .expect("connect");
    db.migrate().await.expect("migrate");
    assert!(
        planner::analyze_new_tables(&db)
            .await
            .expect("analyze")
            .is_empty(),
        "nothing has changed yet"
    );

    // 600 payments of one app, written as a pooled connection would, then their
    // activity counts flushed (a backend reports them when it goes idle).
    let mut conn = PgConnection::connect(&t.url).await.expect("connect");
    for sql in [
        "INSERT INTO apps (id, name, environment, created) VALUES ('app_1', 'Shop', 'test', 0)",
        "INSERT INTO orders (id, app_id, currency, amount_total, amount_paid, amount_refunded, \
         status, line_items, metadata, client_secret, created, updated) \
         SELECT 'ord_' || i, 'app_1', 'usd', 2500, 0, 0, 'open', '[]', '{}', 'cs', i, i \
         FROM generate_series(1, 600) i",
        "INSERT INTO payments (id, app_id, order_id, method, capture_method, provider, \
         lifecycle, status, amount, currency, metadata, created, updated) \
         SELECT 'pay_' || i, 'app_1', 'ord_' || i, 'checkout', 'automatic', 'sandbox', \
         'initiated', 'pending', 2500, 'usd', '{}', i, i FROM generate_series(1, 600) i",
        "SELECT pg_stat_force_next_flush()",
    ] {
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
    }
    let _ = conn.close().await;

    let before = lookup_plan(&t.url).await;
    assert!(
        !found_by_id(&before),
        "without statistics PostgreSQL 15 walks the app's payments for an id; if it now \
         plans this well, the step may no longer be needed:\n{before}"
    );

    let mut analyzed = Vec::new();
    for _ in 0..150 {
        analyzed = planner::analyze_new_tables(&db).await.expect("analyze");
        if !analyzed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        analyzed.iter().any(|t| t == "payments") && analyzed.iter().any(|t| t == "orders"),
        "analyzed: {analyzed:?}"
    );
    assert!(
        !analyzed.iter().any(|t| t == "refunds"),
        "a table without changes is left to autovacuum: {analyzed:?}"
    );
    let after = lookup_plan(&t.url).await;
    assert!(
        found_by_id(&after),
        "with statistics the lookup should use the id:\n{after}"
    );
    assert!(
        planner::analyze_new_tables(&db)
            .await
            .expect("analyze")
            .is_empty(),
        "a table is analyzed once; autovacuum keeps it fresh after that"
    );
    db.close().await;
}

#[tokio::test]
async fn sqlite_needs_no_statistics() {
    let t = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let db = Db::connect(&t.url, DbOptions::default())
        .await
        .expect("connect");
    db.migrate().await.expect("migrate");
    assert!(planner::analyze_new_tables(&db)
        .await
        .expect("analyze")
        .is_empty());
    db.close().await;
}
