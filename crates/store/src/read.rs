//! Reads outside a transaction, and answers made only of what is durable.
//!
//! On SQLite the writer pipelines its commits (`inline/durable.rs`): a reader sees a
//! commit up to one fsync before it is durable. So whatever passes on what a reader
//! saw waits first: [`answer_durably`] runs a request's work, notes how far each of its
//! reads could see (the [`Reader`] executor does, after each read), and then waits until
//! that far is durable. A request that read nothing newer than its own durable writes
//! does not wait at all; one that read a commit still being synced waits for that
//! fsync (a millisecond or two), never for later ones.
//!
//! On PostgreSQL, and on SQLite without pipelining, a commit is durable before anyone
//! sees it, and none of this waits.

use std::cell::Cell;
use std::future::Future;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use sqlx::any::{AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::{Any, AnyPool, Describe, Either, Execute, Executor};

use crate::group::Writer;
use crate::{Db, StoreError};

tokio::task_local! {
    /// How far the reads of the current `answer_durably` could see.
    static SEEN: Cell<u64>;
}

/// The pool of readers, as an executor that notes how far each read could see.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    pool: &'a AnyPool,
    writer: Option<&'a Writer>,
}

impl std::fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

impl<'a> Reader<'a> {
    pub(crate) fn new(pool: &'a AnyPool, writer: Option<&'a Writer>) -> Reader<'a> {
        Reader { pool, writer }
    }

    /// The pool itself, for what is not a single read (acquiring a connection). Reads
    /// made through it are not noted.
    pub fn pool(&self) -> &'a AnyPool {
        self.pool
    }

    /// After a read: it saw at most the commits begun by now.
    fn note(&self) {
        if let Some(w) = self.writer {
            note(w);
        }
    }
}

/// Notes, for the current `answer_durably`, that a read could see every commit begun by
/// now on `w`.
pub(crate) fn note(w: &Writer) {
    note_upto(w.visible());
}

fn note_upto(upto: u64) {
    if upto > 0 {
        let _ = SEEN.try_with(|s| s.set(s.get().max(upto)));
    }
}

impl<'c> Executor<'c> for Reader<'c> {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        self.pool
            .fetch_many(query)
            .inspect(move |_| self.note())
            .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        self.pool
            .fetch_optional(query)
            .inspect(move |_| self.note())
            .boxed()
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.pool.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.pool.describe(sql)
    }
}

/// Runs `work` in a task of its own (`tokio::spawn`) and returns its output; its reads
/// are noted for the caller's `answer_durably` as if it had run here (a task-local does
/// not pass into a spawned task).
pub async fn spawn_noted<F>(work: F) -> Result<F::Output, tokio::task::JoinError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (out, seen) = tokio::spawn(SEEN.scope(Cell::new(0), async move {
        let out = work.await;
        (out, SEEN.with(Cell::get))
    }))
    .await?;
    note_upto(seen);
    Ok(out)
}

/// Runs `work` (a request's), then waits until every commit its reads through
/// [`Db::reader`] could see is durable, and returns its output. Fails only if that
/// cannot be promised (an fsync of the WAL failed). Reads made in tasks that `work`
/// spawns are not noted; each such task passes on what it read under its own call.
pub async fn answer_durably<F: Future>(db: &Db, work: F) -> Result<F::Output, StoreError> {
    let (out, seen) = SEEN
        .scope(Cell::new(0), async {
            let out = work.await;
            (out, SEEN.with(Cell::get))
        })
        .await;
    db.durable_upto(seen).await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::DbOptions;

    async fn db(dir: &tempfile::TempDir, opts: DbOptions) -> Db {
        let url = format!("sqlite://{}", dir.path().join("p.db").display());
        let db = Db::connect(&url, opts).await.unwrap();
        let mut w = db.autocommit().await.unwrap();
        sqlx::query("CREATE TABLE t (n BIGINT)")
            .execute(&mut *w)
            .await
            .unwrap();
        w.commit().await.unwrap();
        db
    }

    async fn insert(db: Db, n: i64) -> Result<(), StoreError> {
        let mut tx = db.begin().await?;
        sqlx::query("INSERT INTO t VALUES ($1)")
            .bind(n)
            .execute(&mut *tx)
            .await?;
        Ok(tx.commit().await?)
    }

    /// A step a request takes on its way: row `n`, committed with `commit_visible`.
    async fn step(db: &Db, n: i64) {
        let mut tx = db.begin().await.unwrap();
        sqlx::query("INSERT INTO t VALUES ($1)")
            .bind(n)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit_visible().await.unwrap();
    }

    async fn seen(db: &Db, n: i64) -> bool {
        let hit: Option<i64> = sqlx::query_scalar("SELECT n FROM t WHERE n = $1")
            .bind(n)
            .fetch_optional(db.reader())
            .await
            .unwrap();
        hit.is_some()
    }

    /// Waits (up to a second) until readers see row `n`.
    async fn until_seen(db: &Db, n: i64) -> bool {
        for _ in 0..500 {
            if seen(db, n).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        false
    }

    /// A request's work, answered through `answer_durably`, in a task of its own.
    fn answering<F, Fut>(
        db: &Db,
        work: F,
    ) -> tokio::task::JoinHandle<Result<Fut::Output, StoreError>>
    where
        F: FnOnce(Db) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let db = db.clone();
        tokio::spawn(async move { answer_durably(&db, work(db.clone())).await })
    }

    /// What a task returned, within five seconds.
    async fn within<T>(task: tokio::task::JoinHandle<T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("in time")
            .expect("the task ran")
    }

    /// The writer applies the next group while the last one's fsync is held back; no
    /// caller is answered, and no read is passed on, before its fsync.
    #[tokio::test]
    async fn the_next_group_is_applied_while_the_last_ones_fsync_is_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir, DbOptions::default()).await;
        let d = db.durability().expect("pipelined by default");
        d.pause(true);

        let first = tokio::spawn(insert(db.clone(), 1));
        // Its COMMIT ran (readers see it) but it is not answered.
        assert!(until_seen(&db, 1).await, "the first group committed");
        assert!(!first.is_finished(), "answered before its fsync");

        // The writer is free: a second caller's work is applied and committed.
        let second = tokio::spawn(insert(db.clone(), 2));
        assert!(
            until_seen(&db, 2).await,
            "the next group was applied meanwhile"
        );
        assert!(!second.is_finished());

        // A read of it is not passed on either; a request that read nothing is.
        let answer = answering(&db, |db| async move { seen(&db, 2).await });
        // Nor one made in a task the request spawned, nor one made in a write
        // transaction that then rolled back (an error path answers from it).
        let spawned = answering(&db, |db| async move {
            spawn_noted(async move { seen(&db, 2).await })
                .await
                .unwrap()
        });
        let rolled_back = answering(&db, |db| async move {
            let mut tx = db.begin().await.unwrap();
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            tx.rollback().await.unwrap();
            n
        });
        let nothing_read = answer_durably(&db, async { 7 }).await.unwrap();
        assert_eq!(nothing_read, 7);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!answer.is_finished(), "a read passed on before its fsync");
        assert!(
            !spawned.is_finished(),
            "a spawned task's read passed on before its fsync"
        );
        assert!(
            !rolled_back.is_finished(),
            "a transaction's read passed on before its fsync"
        );
        assert!(!first.is_finished() && !second.is_finished());

        d.pause(false);
        assert!(within(first).await.is_ok());
        assert!(within(second).await.is_ok());
        assert!(within(answer).await.unwrap());
        assert!(within(spawned).await.unwrap());
        assert_eq!(within(rolled_back).await.unwrap(), 2);
        db.durable().await.unwrap();
        assert_eq!(db.group_commits().unwrap().commits, 3);
    }

    /// A step a request takes on its way (`Tx::commit_visible`) returns once its group
    /// has committed, before the fsync: the next step sees it. The request is answered
    /// only once it is durable, as for a read; a plain `commit` waits for the fsync.
    #[tokio::test]
    async fn a_visible_commit_returns_before_the_fsync_and_its_answer_waits() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir, DbOptions::default()).await;
        let d = db.durability().expect("pipelined by default");
        d.pause(true);

        // First, a request whose only write is such a step: it begins when every
        // commit before it is durable, so only its step's own commit can hold it.
        let only_step = answering(&db, |db| async move {
            step(&db, 3).await;
            5
        });
        assert!(until_seen(&db, 3).await);

        let (stepped, next_step) = tokio::sync::oneshot::channel();
        let request = answering(&db, |db| async move {
            step(&db, 1).await;
            // The next step runs before the fsync, and sees the first.
            let mut next = db.begin().await.unwrap();
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
                .fetch_one(&mut *next)
                .await
                .unwrap();
            drop(next);
            let _ = stepped.send(n);
            n
        });
        let n = tokio::time::timeout(Duration::from_secs(5), next_step)
            .await
            .expect("the next step ran while the fsync was held back")
            .unwrap();
        assert_eq!(n, 2, "it sees both steps made so far");
        let plain = tokio::spawn(insert(db.clone(), 2));
        assert!(until_seen(&db, 2).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!request.is_finished(), "answered before its fsync");
        assert!(
            !only_step.is_finished(),
            "a request answered on a step that is not durable"
        );
        assert!(!plain.is_finished(), "a commit returned before its fsync");

        d.pause(false);
        assert_eq!(within(request).await.unwrap(), 2);
        assert_eq!(within(only_step).await.unwrap(), 5);
        assert!(within(plain).await.is_ok());
    }

    /// On a thread that may wait for the disk (the webhook lane's), the writer's group
    /// is made durable on that thread: its commit returns while the fsync thread is
    /// held back, and that fsync covers the commits before it. A commit from any other
    /// thread waits for the fsync thread.
    #[tokio::test]
    async fn a_thread_that_may_wait_makes_its_own_commits_durable() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir, DbOptions::default()).await;
        db.durability().expect("pipelined by default").pause(true);

        let plain = tokio::spawn(insert(db.clone(), 1));
        assert!(until_seen(&db, 1).await, "the first group committed");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!plain.is_finished(), "answered before its fsync");

        let marked = {
            let db = db.clone();
            std::thread::spawn(move || {
                crate::this_thread_may_wait_for_disk();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    tokio::time::timeout(Duration::from_secs(5), insert(db, 2)).await
                })
            })
        };
        let r = tokio::task::spawn_blocking(move || marked.join().unwrap())
            .await
            .unwrap();
        assert!(
            matches!(r, Ok(Ok(()))),
            "the marked thread's commit waited for the held-back fsync thread: {r:?}"
        );
        assert!(
            within(plain).await.is_ok(),
            "its fsync covered the commit before it"
        );
    }

    /// Without pipelining, SQLite syncs inside each COMMIT and nothing here waits.
    #[tokio::test]
    async fn without_pipelining_a_commit_is_durable_when_seen() {
        let dir = tempfile::tempdir().unwrap();
        let opts = DbOptions {
            commit_pipelining: false,
            ..DbOptions::default()
        };
        let db = db(&dir, opts).await;
        assert!(db.durability().is_none());
        insert(db.clone(), 1).await.unwrap();
        let synchronous: i64 = {
            let mut tx = db.begin().await.unwrap();
            let v = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            v
        };
        assert_eq!(synchronous, 2, "FULL: each COMMIT syncs");
        assert!(answer_durably(&db, seen(&db, 1)).await.unwrap());
    }
}
