//! SQLite's writer commits its callers' transactions in groups (`group.rs`): many
//! transactions under one `COMMIT` (one fsync), each caller answered only once its
//! group is durable; a member that fails or is dropped leaves the others' work alone;
//! a group whose `COMMIT` fails answers every member with an error; readers see a
//! group only once it is committed, with no gap in an `AUTOINCREMENT` sequence.
//! The same transactions on PostgreSQL, which has no groups, keep their outcomes.

use std::sync::Arc;
use std::time::Duration;

use paybridge_store::{Db, DbOptions};
use paybridge_testkit::{on_both, Backend, TestDb};

/// Groups that never grow too old during a test that orders its callers by hand.
fn ageless() -> DbOptions {
    DbOptions {
        group_max_age: Duration::from_secs(60),
        ..DbOptions::default()
    }
}

async fn setup_with(backend: Backend, opts: DbOptions) -> Option<(TestDb, Db)> {
    let t = TestDb::new(backend).await?;
    let db = Db::connect(&t.url, opts).await.expect("connect");
    let mut tx = db.begin().await.expect("begin");
    let ddl = match backend {
        Backend::Sqlite => {
            "CREATE TABLE gc_rows (seq INTEGER PRIMARY KEY AUTOINCREMENT, caller BIGINT NOT NULL UNIQUE)"
        }
        Backend::Postgres => {
            "CREATE TABLE gc_rows (seq BIGSERIAL PRIMARY KEY, caller BIGINT NOT NULL UNIQUE)"
        }
    };
    sqlx::query(ddl).execute(&mut *tx).await.expect("create");
    tx.commit().await.expect("commit");
    Some((t, db))
}

async fn callers_stored(db: &Db) -> Vec<i64> {
    sqlx::query_scalar("SELECT caller FROM gc_rows ORDER BY caller")
        .fetch_all(db.reader())
        .await
        .expect("read")
}

/// What caller `i` does: commit its row (most), drop its transaction after writing
/// (every 5th: an error path's `?`), or meet a unique violation and drop (every 7th,
/// re-inserting caller 0's row, committed by then or earlier in its group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Commits,
    Dropped,
    Conflict,
}

fn fate(i: i64) -> Fate {
    if i > 0 && i % 7 == 0 {
        Fate::Conflict
    } else if i % 5 == 4 {
        Fate::Dropped
    } else {
        Fate::Commits
    }
}

async fn caller(db: Arc<Db>, i: i64) -> Result<(), String> {
    let mut tx = db.begin().await.map_err(|e| e.to_string())?;
    let who = if fate(i) == Fate::Conflict { 0 } else { i };
    sqlx::query("INSERT INTO gc_rows (caller) VALUES ($1)")
        .bind(who)
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    // Some work in the transaction while others queue for the writer.
    tokio::task::yield_now().await;
    if fate(i) == Fate::Dropped {
        drop(tx);
        return Err("dropped".into());
    }
    tx.commit().await.map_err(|e| e.to_string())?;
    // Answered: the row is committed, so a reader on another connection sees it.
    let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM gc_rows WHERE caller = $1")
        .bind(i)
        .fetch_one(db.reader())
        .await
        .map_err(|e| e.to_string())?;
    if seen != 1 {
        return Err(format!(
            "caller {i} was answered before its row was committed"
        ));
    }
    Ok(())
}

/// 200 concurrent transactions: every one that committed is stored and visible when its
/// `commit` returns, none of the dropped or failed ones is, and on SQLite they took far
/// fewer commits than transactions, with the sequence of rows left without gaps.
async fn concurrent_members_commit_together_and_failures_stay_apart(backend: Backend) {
    // No age bound: on a loaded machine 5 ms pass within a group and end it early.
    let Some((_t, db)) = setup_with(backend, ageless()).await else {
        return;
    };
    let db = Arc::new(db);
    // Caller 0 first, so that the conflicting callers meet its row.
    caller(db.clone(), 0).await.expect("caller 0");
    let before = db.group_commits();
    let n = 200;
    let tasks: Vec<_> = (1..n)
        .map(|i| tokio::spawn(caller(db.clone(), i)))
        .collect();
    let mut outcomes = Vec::new();
    for (i, t) in (1..n).zip(tasks) {
        outcomes.push((i, t.await.expect("task")));
    }
    for (i, r) in &outcomes {
        match fate(*i) {
            Fate::Commits => assert_eq!(r, &Ok(()), "caller {i}"),
            Fate::Dropped => assert_eq!(r, &Err("dropped".to_owned()), "caller {i}"),
            Fate::Conflict => assert!(
                r.as_ref()
                    .is_err_and(|e| e.to_lowercase().contains("unique")),
                "caller {i}: {r:?}"
            ),
        }
    }
    let expected: Vec<i64> = (0..n).filter(|&i| fate(i) == Fate::Commits).collect();
    assert_eq!(callers_stored(&db).await, expected);

    if backend == Backend::Sqlite {
        // The rolled-back members' sequence numbers were taken again: no gaps.
        let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM gc_rows ORDER BY seq")
            .fetch_all(db.reader())
            .await
            .expect("seqs");
        let contiguous: Vec<i64> = (seqs[0]..seqs[0] + seqs.len() as i64).collect();
        assert_eq!(seqs, contiguous, "no gap in the sequence");

        let (Some(b), Some(a)) = (before, db.group_commits()) else {
            panic!("SQLite counts its group commits");
        };
        let transactions = a.transactions - b.transactions;
        let commits = a.commits - b.commits;
        assert_eq!(
            transactions,
            expected.len() as u64 - 1,
            "every committed transaction was counted once"
        );
        assert!(
            commits * 2 <= transactions,
            "under concurrency the writer commits in groups: {commits} commits for {transactions} transactions"
        );
    } else {
        assert_eq!(db.group_commits(), None);
    }
}

/// SQLite: a member released into its group is not visible to readers, and its caller is not
/// answered, until the group commits; then both are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_seen_only_once_committed() {
    let (_t, db) = setup_with(Backend::Sqlite, ageless())
        .await
        .expect("sqlite");
    let db = Arc::new(db);
    let mut a = db.begin().await.expect("a");
    sqlx::query("INSERT INTO gc_rows (caller) VALUES (1)")
        .execute(&mut *a)
        .await
        .expect("insert a");
    // B waits for the writer, so A's commit hands the writer on rather than committing.
    let b = tokio::spawn({
        let db = db.clone();
        async move { db.begin().await.expect("b") }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let a_commit = tokio::spawn(a.commit());
    let mut b = b.await.expect("b task");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !a_commit.is_finished(),
        "A is not answered while its group is open"
    );
    assert_eq!(
        callers_stored(&db).await,
        Vec::<i64>::new(),
        "readers do not see an open group"
    );
    sqlx::query("INSERT INTO gc_rows (caller) VALUES (2)")
        .execute(&mut *b)
        .await
        .expect("insert b");
    b.commit().await.expect("b commits the group");
    a_commit
        .await
        .expect("a task")
        .expect("a's group committed");
    assert_eq!(callers_stored(&db).await, vec![1, 2]);
}

/// SQLite: a group whose `COMMIT` fails (here a deferred foreign key that one member leaves
/// broken, checked only at the outer `COMMIT`) answers each of its members with an
/// error and keeps none of their work; the writer goes on with the next group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_group_commit_fails_every_member() {
    let (_t, db) = setup_with(Backend::Sqlite, ageless())
        .await
        .expect("sqlite");
    let db = Arc::new(db);
    let mut tx = db.begin().await.expect("begin");
    sqlx::query("CREATE TABLE gc_parent (id BIGINT PRIMARY KEY)")
        .execute(&mut *tx)
        .await
        .expect("parent");
    sqlx::query(
        "CREATE TABLE gc_child (id BIGINT PRIMARY KEY, parent BIGINT \
         REFERENCES gc_parent (id) DEFERRABLE INITIALLY DEFERRED)",
    )
    .execute(&mut *tx)
    .await
    .expect("child");
    tx.commit().await.expect("ddl");

    // A, then B (the broken one), then C, all in one group: each hands the writer to
    // the next, which is already waiting.
    let mut a = db.begin().await.expect("a");
    sqlx::query("INSERT INTO gc_rows (caller) VALUES (1)")
        .execute(&mut *a)
        .await
        .expect("insert a");
    let b = tokio::spawn({
        let db = db.clone();
        async move {
            let mut b = db.begin().await.expect("b");
            sqlx::query("INSERT INTO gc_child (id, parent) VALUES (1, 999)")
                .execute(&mut *b)
                .await
                .expect("insert b");
            b
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let a_commit = tokio::spawn(a.commit());
    let b = b.await.expect("b task");
    let c = tokio::spawn({
        let db = db.clone();
        async move {
            let mut c = db.begin().await.expect("c");
            sqlx::query("INSERT INTO gc_rows (caller) VALUES (3)")
                .execute(&mut *c)
                .await
                .expect("insert c");
            c.commit().await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b_commit = b.commit().await;
    let c_commit = c.await.expect("c task");
    let a_commit = a_commit.await.expect("a task");
    for (who, r) in [("a", &a_commit), ("b", &b_commit), ("c", &c_commit)] {
        assert!(r.is_err(), "{who} is told its group failed: {r:?}");
    }
    assert_eq!(callers_stored(&db).await, Vec::<i64>::new());
    let children: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM gc_child")
        .fetch_one(db.reader())
        .await
        .expect("children");
    assert_eq!(children, 0);

    // The writer goes on.
    caller(db.clone(), 1)
        .await
        .expect("the next transaction commits");
    assert_eq!(callers_stored(&db).await, vec![1]);
}

on_both!(concurrent_members_commit_together_and_failures_stay_apart);

/// SQLite: a member whose transaction SQLite rolled back whole (as `SQLITE_FULL` or an
/// I/O error would; here a bare `ROLLBACK`) and that commits anyway fails its group at
/// the deferred `RELEASE` that travels with the next member's `SAVEPOINT`: the earlier
/// member is not answered success for work that is gone, and the next caller starts a
/// group of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_rolled_back_whole_fails_its_group() {
    let (_t, db) = setup_with(Backend::Sqlite, ageless())
        .await
        .expect("sqlite");
    let db = Arc::new(db);
    let mut a = db.begin().await.expect("a");
    sqlx::query("INSERT INTO gc_rows (caller) VALUES (1)")
        .execute(&mut *a)
        .await
        .expect("insert a");
    // B waits for the writer, so A's commit hands it on rather than committing.
    let b = tokio::spawn({
        let db = db.clone();
        async move { db.begin().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    sqlx::query("ROLLBACK")
        .execute(&mut *a)
        .await
        .expect("SQLite drops the whole transaction");
    let a_commit = tokio::spawn(a.commit());
    let b = b.await.expect("b task");
    assert!(
        b.is_err(),
        "B's SAVEPOINT came with A's RELEASE, which failed"
    );
    let a_said = a_commit.await.expect("a task");
    assert!(a_said.is_err(), "A is not told its lost work is durable");
    assert_eq!(callers_stored(&db).await, Vec::<i64>::new());
    // The writer goes on.
    let mut c = db.begin().await.expect("c");
    sqlx::query("INSERT INTO gc_rows (caller) VALUES (3)")
        .execute(&mut *c)
        .await
        .expect("insert c");
    c.commit().await.expect("c commits");
    assert_eq!(callers_stored(&db).await, vec![3]);
}

/// SQLite: the time the writer's connection is held is counted, from the moment a
/// caller takes it until it lets it go, and only then (the bench divides it by the wall
/// time to tell whether the writer is the bound).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_the_writer_is_held_is_counted() {
    let Some((_t, db)) = setup_with(Backend::Sqlite, ageless()).await else {
        return;
    };
    let held = |db: &Db| db.group_commits().expect("SQLite counts").held;
    let before = held(&db);
    let tx = db.begin().await.expect("begin");
    tokio::time::sleep(Duration::from_millis(120)).await;
    tx.commit().await.expect("commit");
    // Counted when the connection is let go, which may be a moment after the commit
    // returned (the group's task may still run a checkpoint).
    let mut after = held(&db);
    for _ in 0..500 {
        if after - before >= Duration::from_millis(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        after = held(&db);
    }
    assert!(
        after - before >= Duration::from_millis(120),
        "held for the transaction: {before:?} -> {after:?}"
    );
    // Nobody holds it now: the count stands still.
    tokio::time::sleep(Duration::from_millis(120)).await;
    let idle = held(&db);
    assert!(
        idle - after < Duration::from_millis(60),
        "not held while idle: {after:?} -> {idle:?}"
    );
}
