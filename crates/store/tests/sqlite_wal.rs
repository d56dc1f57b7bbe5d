//! SQLite only: the WAL is checkpointed in the background (the writer never
//! checkpoints inside a commit), so it is reused rather than growing without end,
//! also while writes never pause.

use std::time::Duration;

use paybridge_store::{sqlite_path, Db, DbOptions};
use paybridge_testkit::{Backend, TestDb};

async fn write_mib(db: &Db, mib: usize) {
    write_kib(db, mib, 1024).await
}

async fn write_kib(db: &Db, times: usize, kib: usize) {
    for _ in 0..times {
        let mut tx = db.begin().await.expect("begin");
        // `kib` KiB of fresh pages in one transaction.
        sqlx::query("INSERT INTO filler (data) VALUES (zeroblob($1))")
            .bind(kib as i64 * 1024)
            .execute(&mut *tx)
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
    }
}

async fn setup() -> (TestDb, Db, impl Fn() -> u64) {
    let t = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let db = Db::connect(&t.url, DbOptions::default())
        .await
        .expect("connect");
    let mut tx = db.begin().await.expect("begin");
    sqlx::query("CREATE TABLE filler (data BLOB)")
        .execute(&mut *tx)
        .await
        .expect("create");
    tx.commit().await.expect("commit");
    let mut wal = sqlite_path(&t.url).expect("a file");
    wal.set_file_name(format!(
        "{}-wal",
        wal.file_name().unwrap().to_string_lossy()
    ));
    let size = move || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    (t, db, size)
}

#[tokio::test]
async fn the_wal_is_checkpointed_in_the_background_and_reused() {
    let (_t, db, size) = setup().await;
    write_mib(&db, 6).await;
    let first = size();
    // The writer's catch-up checkpoint may already have rewound the WAL once; the file
    // keeps its largest size.
    assert!(first >= 3 << 20, "the WAL holds what was written: {first}");
    // The writer does not checkpoint on its own (wal_autocheckpoint=0); the background
    // one does within half a second, after which the next writes start the WAL over.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    write_mib(&db, 6).await;
    let second = size();
    assert!(
        second < (6 << 20) + (3 << 20),
        "after a checkpoint the WAL is reused, not grown: {first} then {second} bytes"
    );
    db.close().await;
}

/// Under steady load the writer never pauses for long, so the background checkpoint
/// alone never saw the whole WAL copied while no one wrote, and the WAL was never
/// started over: it grew by everything written, each commit landing on new file
/// blocks. The writer's own catch-up checkpoint lets the next write rewind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_started_over_while_writes_never_pause() {
    let (_t, db, size) = setup().await;
    let started = std::time::Instant::now();
    let (mut written, mut largest) = (0u64, 0u64);
    // A 32 KiB transaction every 2 ms for 3 s (six checkpoint rounds): at most 48 MiB,
    // and never a pause long enough for a checkpoint to copy what came before it.
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    while started.elapsed() < Duration::from_secs(3) {
        tick.tick().await;
        write_kib(&db, 1, 32).await;
        written += 32 << 10;
        largest = largest.max(size());
    }
    assert!(
        written >= 8 << 20,
        "wrote too little to tell ({written} bytes in 3 s)"
    );
    assert!(
        largest < written / 2,
        "the WAL is started over while writes go on: it reached {largest} bytes of {written} written"
    );
    // Each round ended with the writer's own step, counted with the time it held the
    // writer (part of the writer's held time).
    let g = db.group_commits().expect("SQLite's writer");
    assert!(
        g.checkpoint_steps >= 3 && !g.checkpoint_held.is_zero() && g.checkpoint_held < g.held,
        "the writer's checkpoint steps are counted: {g:?}"
    );
    db.close().await;
}
