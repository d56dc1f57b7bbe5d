use futures::FutureExt;
use sqlx::{AnyConnection, Connection, Executor, Row};

/// The same statements through sqlx's SQLite driver and through this one, on one
/// file: the rows must be the same, value by value, kind by kind.
async fn both() -> (tempfile::TempDir, AnyConnection, AnyConnection) {
    crate::install_drivers();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/both.db?mode=rwc", dir.path().display());
    let mut stock = AnyConnection::connect(&url).await.unwrap();
    stock
        .execute(
            "PRAGMA journal_mode=WAL; \
             CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT NOT NULL, r REAL, b BLOB, s TEXT)",
        )
        .await
        .unwrap();
    let inline = AnyConnection::connect(&super::InlineOptions::url_for(&url, None))
        .await
        .unwrap();
    (dir, stock, inline)
}

fn kinds(rows: &[sqlx::any::AnyRow]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            let names: Vec<_> = (0..r.len())
                .map(|i| r.columns[i].name.to_string())
                .collect();
            format!(
                "{names:?} {:?}",
                r.values.iter().map(|v| &v.kind).collect::<Vec<_>>()
            )
        })
        .collect()
}

#[tokio::test]
async fn rows_are_those_of_sqlx_s_own_sqlite_driver() {
    let (_dir, mut stock, mut inline) = both().await;
    assert_eq!(inline.backend_name(), "SQLite");
    // Written through the inline driver with `$N` out of order and repeated, and a
    // bare `?`, read through both.
    let done = sqlx::query("INSERT INTO t (id, n, r, b, s) VALUES ($2, $1, $3, $4, $5), ($2 || 'x', $1 * 2, NULL, NULL, 'é ü')")
        .bind(7_i64)
        .bind("a")
        .bind(1.5_f64)
        .bind(vec![0_u8, 255])
        .bind(Option::<String>::None)
        .execute(&mut inline)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 2);
    for sql in [
        "SELECT * FROM t ORDER BY id",
        "SELECT COUNT(*) AS c, SUM(n), MAX(r), 'lit', NULL FROM t",
        "SELECT id FROM t WHERE n > 100",
    ] {
        let a = sqlx::query(sql).fetch_all(&mut stock).await.unwrap();
        let b = sqlx::query(sql).fetch_all(&mut inline).await.unwrap();
        assert_eq!(kinds(&a), kinds(&b), "{sql}");
    }
    let row = sqlx::query("SELECT n, s FROM t WHERE id = ?")
        .bind("ax")
        .fetch_one(&mut inline)
        .await
        .unwrap();
    assert_eq!(row.get::<i64, _>("n"), 14);
    assert_eq!(row.get::<String, _>(1), "é ü");
    let none = sqlx::query("SELECT n FROM t WHERE id = $1")
        .bind("zz")
        .fetch_optional(&mut inline)
        .await
        .unwrap();
    assert!(none.is_none());
}

#[tokio::test]
async fn a_text_of_several_statements_runs_them_all_with_their_arguments() {
    let (_dir, mut stock, mut inline) = both().await;
    for _ in 0..2 {
        // The second time, the split is the cached one.
        sqlx::query(
            "INSERT INTO t (id, n) VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1; \
             UPDATE t SET s = $2 WHERE id = $1;",
        )
        .bind("m")
        .bind("set")
        .execute(&mut inline)
        .await
        .unwrap();
    }
    // A `;` in a literal: one statement, found by SQLite's parser.
    let semi: String = sqlx::query_scalar("SELECT 'a;b' || $1;")
        .bind("c")
        .fetch_one(&mut inline)
        .await
        .unwrap();
    assert_eq!(semi, "a;bc");
    let row = sqlx::query("SELECT n, s FROM t WHERE id = 'm'")
        .fetch_one(&mut stock)
        .await
        .unwrap();
    assert_eq!(
        (row.get::<i64, _>(0), row.get::<String, _>(1)),
        (2, "set".into())
    );
}

#[tokio::test]
async fn a_constraint_failure_is_a_database_error_of_its_kind() {
    let (_dir, _stock, mut inline) = both().await;
    let insert = "INSERT INTO t (id, n) VALUES ($1, $2)";
    sqlx::query(insert)
        .bind("u")
        .bind(1_i64)
        .execute(&mut inline)
        .await
        .unwrap();
    let e = sqlx::query(insert)
        .bind("u")
        .bind(1_i64)
        .execute(&mut inline)
        .await
        .unwrap_err();
    let sqlx::Error::Database(d) = &e else {
        panic!("{e:?}")
    };
    assert!(d.is_unique_violation(), "{d}");
    assert_eq!(d.code().as_deref(), Some("1555"));
    assert!(
        d.message().contains("UNIQUE constraint failed: t.id"),
        "{}",
        d.message()
    );
    let e = sqlx::query(insert)
        .bind("v")
        .bind(Option::<i64>::None)
        .execute(&mut inline)
        .await
        .unwrap_err();
    let sqlx::Error::Database(d) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(d.kind(), sqlx::error::ErrorKind::NotNullViolation);
    let e = sqlx::query("SELEC 1")
        .execute(&mut inline)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("syntax error"), "{e}");
}

#[tokio::test]
async fn a_transaction_commits_on_the_disk_thread_and_is_seen_by_others() {
    let (_dir, mut stock, mut inline) = both().await;
    let mut tx = inline.begin().await.unwrap();
    sqlx::query("INSERT INTO t (id, n) VALUES ('c', 1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let seen = |c: &'static str| format!("SELECT COUNT(*) FROM t WHERE id = '{c}'");
    let before: i64 = sqlx::query_scalar(&seen("c"))
        .fetch_one(&mut stock)
        .await
        .unwrap();
    assert_eq!(before, 0, "not seen before the commit");
    tx.commit().await.unwrap();
    let after: i64 = sqlx::query_scalar(&seen("c"))
        .fetch_one(&mut stock)
        .await
        .unwrap();
    assert_eq!(after, 1);
    // Dropped: rolled back.
    {
        let mut tx = inline.begin().await.unwrap();
        sqlx::query("INSERT INTO t (id, n) VALUES ('d', 1)")
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    let dropped: i64 = sqlx::query_scalar(&seen("d"))
        .fetch_one(&mut inline)
        .await
        .unwrap();
    assert_eq!(dropped, 0);
}

/// Where each kind of statement runs: on the disk thread if it may wait for the disk or
/// another connection; a pipelined connection's `COMMIT` inside a transaction only
/// writes the WAL, and a statement that only reads syncs nothing: both run on the
/// caller's thread.
#[test]
fn what_waits_for_the_disk() {
    const INSERT: &str = "INSERT INTO t VALUES (1)";
    const SELECT: &str = "SELECT n FROM t";
    const BEGIN: &str = "BEGIN IMMEDIATE; SAVEPOINT pb_member";
    const NEXT_MEMBER: &str = "RELEASE pb_member; SAVEPOINT pb_member";
    const COMMIT: &str = "RELEASE pb_member; COMMIT";
    const CHECKPOINT: &str = "PRAGMA wal_checkpoint(PASSIVE)";
    const PRAGMA: &str = "PRAGMA synchronous=NORMAL";
    // (statement, outside a transaction, a savepoint began it, fast commits, it only
    // reads) → waits for the disk, and counts as a commit.
    let cases: &[(&str, bool, bool, bool, bool, bool, bool)] = &[
        (INSERT, true, false, false, false, true, true),
        (INSERT, true, false, true, false, true, true),
        (INSERT, false, false, false, false, false, false),
        (INSERT, false, false, true, false, false, false),
        // A reader's statement: outside a transaction, it neither waits nor commits.
        (SELECT, true, false, false, true, false, false),
        (SELECT, true, false, true, true, false, false),
        (SELECT, false, false, false, true, false, false),
        (BEGIN, true, false, false, false, true, false),
        (BEGIN, true, false, true, false, true, false),
        (NEXT_MEMBER, false, false, false, false, false, false),
        (NEXT_MEMBER, false, false, true, false, false, false),
        // The RELEASE of a savepoint that began the transaction commits it.
        (NEXT_MEMBER, false, true, false, false, true, true),
        (NEXT_MEMBER, false, true, true, false, false, true),
        (COMMIT, false, false, false, false, true, true),
        (COMMIT, false, false, true, false, false, true),
        (CHECKPOINT, false, false, false, false, true, false),
        (CHECKPOINT, false, false, true, false, true, false),
        (CHECKPOINT, true, false, false, false, true, false),
        (PRAGMA, true, false, false, false, false, false),
        (PRAGMA, true, false, true, false, false, false),
        ("SAVEPOINT s1", true, false, true, false, true, false),
        ("RELEASE s1", false, true, true, false, false, true),
        ("RELEASE s1", false, false, true, false, false, false),
    ];
    for &(sql, autocommit, savepoint_began_it, fast, reads, waits, commits) in cases {
        let kind = super::Kind::of(sql, autocommit, savepoint_began_it, reads);
        let case = format!(
            "{sql} (autocommit {autocommit}, savepoint began it {savepoint_began_it}, \
             fast {fast}, reads {reads})"
        );
        assert_eq!(
            kind.waits_for_disk(autocommit, fast),
            waits,
            "waits: {case}"
        );
        assert_eq!(kind.commits, commits, "commits: {case}");
        // On a thread that may wait for the disk, only a checkpoint still goes there.
        assert_eq!(
            kind.runs_on_disk_thread(autocommit, fast, false),
            waits,
            "on the disk thread: {case}"
        );
        assert_eq!(
            kind.runs_on_disk_thread(autocommit, fast, true),
            waits && sql == CHECKPOINT,
            "on the disk thread from a marked thread: {case}"
        );
    }
}

/// Which statements SQLite says only read: one `SELECT` (or a `WITH` that selects),
/// whatever its case; not a `WITH` that writes, nor a text of several statements.
#[tokio::test]
async fn only_a_lone_select_only_reads() {
    let (_dir, path) = file("reads");
    let conn = with_table(&path).await;
    let g = super::lock(&conn.inner);
    for (sql, reads) in [
        ("SELECT n FROM t WHERE n = $1", true),
        ("  select count(*) from t", true),
        ("WITH x AS (SELECT 1 AS n) SELECT n FROM x", true),
        (
            "WITH x AS (SELECT 1 AS n) INSERT INTO t SELECT n FROM x",
            false,
        ),
        ("SELECT 1; INSERT INTO t VALUES (1)", false),
        ("INSERT INTO t VALUES (1)", false),
        ("SELECT n FROM missing", false),
        ("PRAGMA wal_checkpoint(PASSIVE)", false),
    ] {
        assert_eq!(super::only_reads(&g.conn, sql), reads, "{sql}");
    }
}

/// A read outside a transaction runs on the caller's thread, even while the disk
/// thread is busy (as a reader's checkpoint keeps it); a write outside a transaction
/// waits for the disk thread.
#[tokio::test]
async fn a_read_runs_here_and_a_write_on_the_disk_thread() {
    let (_dir, path) = file("here");
    let mut conn = with_table(&path).await;
    conn.execute("INSERT INTO t VALUES (7)").await.unwrap();
    // Whatever goes to the disk thread now cannot finish until it is let go.
    let (release, hold) = hold_disk_thread(&conn);
    let read = conn
        .run("SELECT n FROM t", Vec::new())
        .now_or_never()
        .expect("a read is answered at once, here")
        .unwrap();
    assert_eq!(first_column(&read), vec![7]);
    let mut write = conn.run("INSERT INTO t VALUES (8)", Vec::new());
    assert!(
        (&mut write).now_or_never().is_none(),
        "a write outside a transaction waits for the disk thread"
    );
    release.send(()).unwrap();
    hold.await.unwrap();
    write.await.unwrap();
}

/// A caller that goes away while its `COMMIT` waits in the disk thread's queue: the
/// next statements still run after that `COMMIT`, in the order they were sent (as on
/// sqlx's driver), not on the transaction about to be committed under them.
#[tokio::test]
async fn statements_after_a_commit_still_queued_run_after_it() {
    let (_dir, path) = file("order");
    let mut conn = with_table(&path).await;
    conn.execute("BEGIN IMMEDIATE").await.unwrap();
    conn.execute("INSERT INTO t VALUES (1)").await.unwrap();
    // Hold the disk thread, then queue the COMMIT behind it and drop its caller.
    let hold = super::on_disk(&conn.disk, &conn.pending, || {
        std::thread::sleep(std::time::Duration::from_millis(200))
    });
    drop(conn.run("COMMIT", Vec::new()));
    // Sent after the COMMIT: it must begin a transaction of its own, not nest in the
    // one being committed.
    conn.execute("SAVEPOINT s1").await.unwrap();
    hold.await.unwrap();
    {
        let g = super::lock(&conn.inner);
        assert!(
            !g.conn.is_autocommit(),
            "SAVEPOINT ran after the COMMIT, in a transaction of its own"
        );
        assert!(g.savepoint_began_it);
    }
    // Its RELEASE commits, on the disk thread.
    conn.execute("INSERT INTO t VALUES (2)").await.unwrap();
    conn.execute("RELEASE s1").await.unwrap();
    let g = super::lock(&conn.inner);
    assert!(g.conn.is_autocommit());
    let n: i64 = g
        .conn
        .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(conn.pending.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// A database file's path in a directory of its own (kept while the directory lives).
fn file(name: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.db")).display().to_string();
    (dir, path)
}

/// A connection of this driver on `path`, with a table `t (n BIGINT)`.
async fn with_table(path: &str) -> super::InlineConnection {
    let mut conn = super::InlineConnection::open(path.to_owned(), None)
        .await
        .unwrap();
    conn.execute("CREATE TABLE t (n BIGINT)").await.unwrap();
    conn
}

/// The first column of every row a statement returned, as integers.
fn first_column(results: &super::Results) -> Vec<i64> {
    results
        .iter()
        .filter_map(|r| r.as_ref().right().map(|row| row.get::<i64, _>(0)))
        .collect()
}

/// Holds `conn`'s disk thread (without holding later statements back, as `on_disk`
/// would) until the returned sender is used or dropped.
fn hold_disk_thread(
    conn: &super::InlineConnection,
) -> (
    std::sync::mpsc::Sender<()>,
    impl std::future::Future<Output = Result<(), sqlx::Error>>,
) {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let hold = conn.disk.run(move || {
        let _ = held.recv();
    });
    (release, hold)
}

/// A read that runs past its budget on the caller's thread is interrupted there and
/// read again, whole, on the disk thread: a tokio worker never runs a long scan.
#[tokio::test]
async fn a_long_read_moves_to_the_disk_thread() {
    let (_dir, path) = file("long");
    let mut conn = super::InlineConnection::open(path, None).await.unwrap();
    const LONG: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
                        WHERE x < 3000000) SELECT COUNT(*) FROM c";
    let (release, hold) = hold_disk_thread(&conn);
    let started = std::time::Instant::now();
    let mut read = conn.run(LONG, Vec::new());
    assert!(
        (&mut read).now_or_never().is_none(),
        "the long read went to the disk thread"
    );
    assert!(
        started.elapsed() < super::here::BUDGET * 50,
        "it gave the thread back after about its budget: {:?}",
        started.elapsed()
    );
    release.send(()).unwrap();
    hold.await.unwrap();
    assert_eq!(
        first_column(&read.await.unwrap()),
        vec![3_000_000],
        "read again whole"
    );
}

/// A read that meets another connection's lock (here a file not in WAL mode, where a
/// writer's exclusive lock keeps readers out) does not sleep in SQLite's busy handler
/// on the caller's thread: it waits on the disk thread, with the connection's busy
/// timeout, and is answered once the lock is gone.
#[tokio::test]
async fn a_read_that_meets_a_lock_waits_on_the_disk_thread() {
    let (_dir, path) = file("locked");
    let mut conn = with_table(&path).await;
    conn.execute("PRAGMA busy_timeout=5000").await.unwrap();
    conn.execute("INSERT INTO t VALUES (7)").await.unwrap();

    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch("BEGIN EXCLUSIVE; INSERT INTO t VALUES (8)")
        .unwrap();
    let started = std::time::Instant::now();
    let mut read = conn.run("SELECT COUNT(*) FROM t", Vec::new());
    assert!(
        (&mut read).now_or_never().is_none(),
        "a read that meets a lock waits on the disk thread"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "and not here, in SQLite's busy handler: {:?}",
        started.elapsed()
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    other.execute_batch("COMMIT").unwrap();
    let rows = tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .expect("answered once the lock was gone")
        .unwrap();
    assert_eq!(
        first_column(&rows),
        vec![2],
        "it read after the other's commit"
    );
    assert_eq!(
        super::lock(&conn.inner).busy,
        std::time::Duration::from_secs(5),
        "the busy timeout is back"
    );
}

/// A pipelined `COMMIT` runs on the caller's thread, except while another connection
/// checkpoints the WAL and for the first commit after it: that checkpoint may have
/// copied the whole WAL, so the commit may start the WAL over and sync its new header,
/// which must not happen on a tokio worker. It goes to the disk thread instead.
#[tokio::test]
async fn a_commit_after_another_connections_checkpoint_goes_to_the_disk_thread() {
    let (_dir, path) = file("others");
    let d = super::Durability::start().unwrap();
    let mut conn = super::InlineConnection::open(path, Some(d.clone()))
        .await
        .unwrap();
    conn.execute("PRAGMA journal_mode=WAL").await.unwrap();
    conn.execute("PRAGMA synchronous=NORMAL").await.unwrap();
    conn.execute("CREATE TABLE t (n BIGINT)").await.unwrap();
    // Whether a commit is answered at once while the disk thread is held.
    async fn commit_runs_here(conn: &mut super::InlineConnection) -> bool {
        conn.execute("BEGIN IMMEDIATE").await.unwrap();
        conn.execute("INSERT INTO t VALUES (1)").await.unwrap();
        let (release, hold) = hold_disk_thread(conn);
        let mut commit = conn.run("COMMIT", Vec::new());
        let here = (&mut commit).now_or_never().is_some();
        release.send(()).unwrap();
        hold.await.unwrap();
        if !here {
            commit.await.unwrap();
        }
        here
    }
    assert!(
        commit_runs_here(&mut conn).await,
        "a commit only writes the WAL"
    );
    let another = d.another_checkpoints();
    assert!(
        !commit_runs_here(&mut conn).await,
        "while another connection checkpoints"
    );
    drop(another);
    assert!(
        !commit_runs_here(&mut conn).await,
        "the first commit after the checkpoint"
    );
    assert!(commit_runs_here(&mut conn).await, "and not the next");
}

/// SQLite keeps no memory statistics once the drivers are installed (each
/// `sqlite3_malloc` would otherwise take a process-wide mutex): bytes it allocates are
/// not counted. It needs a process of its own, where this test's `install_drivers` is
/// SQLite's first use, as under nextest (`scripts/test`); in `cargo test`'s one process
/// another test may have used SQLite first, and it says so and checks nothing.
#[tokio::test]
async fn sqlite_counts_no_memory() {
    if std::env::var_os("NEXTEST").is_none() {
        eprintln!("sqlite_counts_no_memory needs a process of its own (nextest): not checked");
        return;
    }
    let (_dir, mut stock, mut inline) = both().await;
    for conn in [&mut stock, &mut inline] {
        conn.execute("INSERT INTO t (id, n, b) VALUES (hex(randomblob(8)), 1, randomblob(100000))")
            .await
            .unwrap();
    }
    // SAFETY: reads one of SQLite's counters.
    let used = unsafe { rusqlite::ffi::sqlite3_memory_used() };
    assert_eq!(used, 0, "SQLite counted {used} bytes in use");
}

/// What a connection does on a thread marked by `this_thread_may_wait_for_disk` (the
/// webhook lane's) or on another one, with its disk thread held: whether a `BEGIN
/// IMMEDIATE`, the first `COMMIT` after a checkpoint (a pipelined one that may start
/// the WAL over) and a checkpoint are answered at once, and whether a `BEGIN` is while
/// a checkpoint sent to the disk thread is pending.
fn runs_at_once(marked: bool) -> [bool; 4] {
    std::thread::spawn(move || {
        if marked {
            super::this_thread_may_wait_for_disk();
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (_dir, path) = file("marked");
            let d = super::Durability::start().unwrap();
            let mut conn = super::InlineConnection::open(path, Some(d)).await.unwrap();
            for sql in [
                "PRAGMA journal_mode=WAL",
                "PRAGMA synchronous=NORMAL",
                "CREATE TABLE t (n BIGINT)",
            ] {
                conn.execute(sql).await.unwrap();
            }
            async fn at_once(conn: &mut super::InlineConnection, sql: &str) -> bool {
                let (release, hold) = hold_disk_thread(conn);
                let mut run = conn.run(sql, Vec::new());
                let here = (&mut run).now_or_never().map(Result::unwrap).is_some();
                release.send(()).unwrap();
                hold.await.unwrap();
                if !here {
                    run.await.unwrap();
                }
                here
            }
            let checkpoint = at_once(&mut conn, "PRAGMA wal_checkpoint(PASSIVE)").await;
            let begin = at_once(&mut conn, "BEGIN IMMEDIATE").await;
            conn.execute("INSERT INTO t VALUES (1)").await.unwrap();
            let commit = at_once(&mut conn, "COMMIT").await;
            // A checkpoint pending on the held disk thread: the `BEGIN` queues behind it.
            let (release, hold) = hold_disk_thread(&conn);
            let mut pending = conn.run("PRAGMA wal_checkpoint(PASSIVE)", Vec::new());
            assert!((&mut pending).now_or_never().is_none());
            let mut begin_run = conn.run("BEGIN IMMEDIATE", Vec::new());
            let behind = (&mut begin_run).now_or_never().is_some();
            release.send(()).unwrap();
            hold.await.unwrap();
            pending.await.unwrap();
            if !behind {
                begin_run.await.unwrap();
            }
            conn.execute("ROLLBACK").await.unwrap();
            [begin, commit, checkpoint, behind]
        })
    })
    .join()
    .unwrap()
}

/// On a marked thread the `BEGIN` and the first `COMMIT` after a checkpoint run on the
/// caller's thread; a checkpoint still goes to the disk thread, and statements queue
/// behind a job pending there. On any other thread all of them wait for the disk
/// thread.
#[test]
fn a_marked_thread_runs_what_would_wait_for_the_disk_itself() {
    assert_eq!(runs_at_once(true), [true, true, false, false]);
    assert_eq!(runs_at_once(false), [false, false, false, false]);
}
