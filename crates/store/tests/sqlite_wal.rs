//! SQLite only: the WAL is checkpointed in the background (the writer never
//! checkpoints inside a commit), so it is reused rather than growing without end.

use std::time::Duration;

use paybridge_store::{sqlite_path, Db, DbOptions};
use paybridge_testkit::{Backend, TestDb};

async fn write_mib(db: &Db, mib: usize) {
    for _ in 0..mib {
        let mut tx = db.begin().await.expect("begin");
        // 1 MiB of fresh pages in one transaction.
        sqlx::query("INSERT INTO filler (data) VALUES (zeroblob(1048576))")
            .execute(&mut *tx)
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
    }
}

#[tokio::test]
async fn the_wal_is_checkpointed_in_the_background_and_reused() {
    let t = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let db = Db::connect(&t.url, DbOptions::default())
        .await
        .expect("connect");
    sqlx::query("CREATE TABLE filler (data BLOB)")
        .execute(db.writer())
        .await
        .expect("create");
    let mut wal = sqlite_path(&t.url).expect("a file");
    wal.set_file_name(format!(
        "{}-wal",
        wal.file_name().unwrap().to_string_lossy()
    ));
    let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);

    write_mib(&db, 6).await;
    let first = size();
    assert!(first >= 6 << 20, "the WAL holds the 6 MiB written: {first}");
    // The writer does not checkpoint on its own (wal_autocheckpoint=0); the background
    // one does within half a second, after which the next writes start the WAL over.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    write_mib(&db, 6).await;
    let second = size();
    assert!(
        second < first + (3 << 20),
        "after a checkpoint the WAL is reused, not grown: {first} then {second} bytes"
    );
    db.close().await;
}
