//! SQLite's connections, the writer's and the readers', driven on the caller's thread.
//!
//! sqlx's SQLite driver gives each connection a thread of its own: every statement is
//! sent to that thread over a channel and its rows are sent back, two thread hand-offs
//! (and usually two wake-ups) per statement. On the one writer connection that is the
//! serial chain every write waits in: a checkout ran about 18 statements in a row, each
//! costing a round trip of ~50 µs to the connection's thread (BENCHMARKS.md).
//!
//! The writer's transactions are serialised anyway (`group.rs` hands the connection to
//! one caller at a time), so this driver runs each statement on the thread of the task
//! that holds the writer, through `rusqlite`, with every statement prepared once and
//! cached. What may wait for the disk or for another connection runs on the
//! connection's own disk thread instead, so that a tokio worker thread never waits for
//! an fsync: a `BEGIN` (it may wait for another connection's write lock), a
//! checkpoint, any statement outside a transaction that may write (it commits, and
//! syncs, on its own), and a `COMMIT` when SQLite syncs inside it. Pipelined
//! (`durable.rs`: `synchronous=NORMAL` and a `Durability` that fsyncs the WAL on a
//! thread of its own), a `COMMIT` only writes the WAL and runs here like any
//! statement, except while another connection checkpoints and the first after a
//! checkpoint (it may start the WAL over and sync the new header).
//! Statements still run in the order they were sent (see `InlineConnection`). A thread
//! marked by [`this_thread_may_wait_for_disk`] (the webhook lane's own, not a tokio
//! worker) runs what would go to the disk thread itself, but for checkpoints.
//!
//! The readers use it too. A read pays the same two hand-offs on sqlx's driver (16 % of
//! the server's CPU under checkout load, BENCHMARKS.md), and a statement that only
//! reads (`only_reads`: SQLite's own `sqlite3_stmt_readonly`, asked of the prepared
//! statement) takes only a WAL read lock, which no writer holds up, and syncs nothing:
//! it runs on the caller's thread, inside a transaction or outside one. A reader's
//! checkpoint still goes to its disk thread. A read outside a transaction occupies the
//! caller's tokio worker only while it need not wait and for at most 2 ms (`here.rs`):
//! one that meets another connection's lock, or runs longer (a report over many
//! rows), is read again on the disk thread. Most reads are index lookups of a page of
//! rows, tens of microseconds.
//!
//! It is a driver for sqlx's `Any` (URL scheme `sqlite-inline:`), so the repository
//! functions run on it unchanged, as on any `AnyConnection`: the same SQL, the same
//! rows. Values are mapped as sqlx's SQLite driver maps them for `Any` (by each
//! value's storage class: INTEGER → `BigInt`, REAL → `Double`, TEXT, BLOB, NULL), `$N`
//! and `?` parameters are bound as it binds them, and a failed statement is a
//! `sqlx::Error::Database` with SQLite's extended code, so `is_unique_violation` and the
//! rest work as before.
//!
//! Only `Any` is offered: the typed side of the driver (`InlineSqlite`'s own rows,
//! values, arguments and statements) has no values and cannot be used. Migrations do
//! not run on this connection either (`Db::migrate` uses a sqlx connection of its own
//! while it holds the writer).

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use rusqlite::OpenFlags;
use sqlx::any::{AnyArguments, AnyQueryResult, AnyRow};
use sqlx::{Either, Error};
use sqlx_core::any::driver::AnyDriver;
use sqlx_core::any::AnyValueKind;

mod driver;
pub(crate) mod durable;
mod exec;
mod here;
#[cfg(test)]
mod tests;
mod typed;

pub use driver::InlineOptions;
pub use durable::Durability;
pub use typed::InlineSqlite;

pub(crate) const SCHEME: &str = "sqlite-inline";

/// The driver, installed beside sqlx's own (`crate::install_drivers`).
pub(crate) const DRIVER: AnyDriver = AnyDriver::without_migrate::<InlineSqlite>();

/// How many prepared statements the connection keeps, and how many statement shapes
/// (columns) and splits of multi-statement texts. The writer runs a few dozen distinct
/// texts, and lists of ids make more (one per list length); 128 holds what the webhook
/// lane and checkouts use, and keeps the idle process near its 40 MiB (each entry is a
/// compiled statement, and its text is a key: at 512 the process was 2.5 MiB larger).
const STATEMENT_CACHE: usize = 128;

/// Process-wide SQLite settings, made before SQLite's first connection (it takes them
/// only then; later they fail with `SQLITE_MISUSE` and change nothing).
///
/// Memory statistics off (`SQLITE_CONFIG_MEMSTATUS`, as SQLite's own list of
/// recommended options advises): with them on, every `sqlite3_malloc` and
/// `sqlite3_free` takes a process-wide mutex to count bytes that nothing here reads.
pub(crate) fn configure_sqlite() {
    // SAFETY: `sqlite3_config` with an integer argument, as SQLITE_CONFIG_MEMSTATUS
    // takes; it only sets a global before SQLite is initialised.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int)
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        tracing::debug!(
            rc,
            "SQLite was initialised already; its memory statistics stay on"
        );
    }
}

thread_local! {
    static MAY_WAIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the calling thread as one that may wait for the disk: a thread of its own that
/// runs one task, not a tokio worker (the webhook ingest lane's, on SQLite). What a
/// connection of this driver would send to its disk thread runs on this thread instead
/// (a `BEGIN`, a commit that syncs, such as the first after a checkpoint, a write
/// outside a transaction), on every such connection used here; only a checkpoint
/// still goes to the disk thread, so that the group's callers are answered while it
/// runs. A writer's group committed from this thread is made durable on it, once the
/// writer has been handed on ([`Durability::sync_here`]), rather than by the fsync
/// thread. Each of those hand-offs was a wake-up of another thread and one back, and
/// each wake-up waits for a core: on a busy machine they were a sixth of a webhook
/// batch. Statements still run in the order they were sent: while a job sent to the
/// disk thread is pending, the later ones queue behind it as before.
pub fn this_thread_may_wait_for_disk() {
    MAY_WAIT.with(|m| m.set(true));
}

/// Whether the calling thread was marked by [`this_thread_may_wait_for_disk`].
pub(crate) fn may_wait_here() -> bool {
    MAY_WAIT.with(std::cell::Cell::get)
}

/// A connection, the writer's or a reader's. The `rusqlite` connection is behind a
/// mutex only so that a statement that waits for the disk can run on the connection's
/// disk thread; the connection is used by one task at a time, so the mutex is never
/// contended but by a `COMMIT` still finishing there after its caller went away.
///
/// Statements run in the order they were sent, as on sqlx's driver: while a job sent
/// to the disk thread has not finished (`pending`), every later statement goes there
/// too, behind it. Otherwise a caller that went away while its `COMMIT` waited in the
/// disk thread's queue would let the next caller's statements run first, on a
/// transaction about to be committed under them.
pub struct InlineConnection {
    inner: Arc<Mutex<Inner>>,
    disk: DiskThread,
    pending: Arc<AtomicUsize>,
    depth: usize,
}

type Job = Box<dyn FnOnce() + Send>;

/// A job sent to the disk thread has run (or panicked, or was never run because the
/// thread is gone): it no longer holds later statements back.
struct Done(Arc<AtomicUsize>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The connection's one thread for what waits for the disk: commits, checkpoints,
/// opening and closing. One thread of its own rather than tokio's blocking pool: the
/// pool starts threads as it pleases, and each thread that runs SQLite takes a malloc
/// arena of its own (the idle process was 2 MiB larger with the pool). It ends when the
/// connection is closed or dropped.
#[derive(Clone)]
struct DiskThread(std::sync::mpsc::Sender<Job>);

impl DiskThread {
    fn start() -> Result<DiskThread, Error> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("pb-sqlite-disk".into())
            .spawn(move || {
                for job in rx {
                    // A panic fails that job's caller (its answer is dropped), not the
                    // jobs after it.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })
            .map_err(Error::Io)?;
        Ok(DiskThread(tx))
    }

    /// Runs `f` on the thread and waits for its answer.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, Error>> + Send + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self.0.send(Box::new(move || {
            let _ = tx.send(f());
        }));
        async move {
            sent.map_err(|_| Error::WorkerCrashed)?;
            rx.await.map_err(|_| {
                tracing::error!("a statement on the SQLite writer's disk thread panicked");
                Error::WorkerCrashed
            })
        }
    }
}

struct Inner {
    conn: rusqlite::Connection,
    /// Column names and columns of each statement text that returns rows.
    shapes: std::collections::HashMap<Box<str>, Arc<exec::Shape>>,
    /// Where each statement of a multi-statement text starts and ends (texts of one
    /// statement are not kept here).
    splits: std::collections::HashMap<Box<str>, Arc<[Range<usize>]>>,
    /// The open transaction was begun by a `SAVEPOINT` outside one (SQLite does that
    /// after it rolled a group back on its own): its `RELEASE` commits, and syncs.
    savepoint_began_it: bool,
    /// What makes this connection's commits durable when SQLite does not (`durable.rs`).
    durability: Option<Arc<Durability>>,
    /// SQLite syncs each commit itself (`synchronous` is `FULL` or `EXTRA`), as read
    /// after every `PRAGMA` run here.
    commits_sync: bool,
    /// A checkpoint ran here since the last commit: the next commit may start the WAL
    /// over, and SQLite then syncs the WAL's new header inside it.
    after_checkpoint: bool,
    /// How long SQLite waits for another connection's lock (`busy_timeout`), as read
    /// after every `PRAGMA` run here.
    busy: std::time::Duration,
    /// When the statement running on the caller's thread is interrupted (`here.rs`).
    deadline: Arc<std::sync::atomic::AtomicU64>,
}

impl Inner {
    /// Commits do not sync, and the connection's `Durability` makes them durable.
    fn pipelined(&self) -> bool {
        self.durability.is_some() && !self.commits_sync
    }

    /// A commit inside a transaction runs on the caller's thread: it only writes the
    /// WAL (see `Kind::waits_for_disk`).
    fn fast_commits(&self) -> bool {
        self.pipelined()
            && !self.after_checkpoint
            && !self
                .durability
                .as_ref()
                .is_some_and(|d| d.after_others_checkpoint())
    }

    /// What `sql` may do if it runs now.
    fn kind(&self, sql: &str) -> Kind {
        let autocommit = self.conn.is_autocommit();
        let reads = autocommit && only_reads(&self.conn, sql);
        Kind::of(sql, autocommit, self.savepoint_began_it, reads)
    }
}

/// `sql` is one statement that SQLite says only reads (a `SELECT`, or a `WITH` that
/// selects). Outside a transaction it takes only a WAL read lock, which no writer
/// holds up, and it writes and syncs nothing.
fn only_reads(conn: &rusqlite::Connection, sql: &str) -> bool {
    let head = sql.trim_start();
    let starts = |word: &str| {
        head.get(..word.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(word))
    };
    (starts("SELECT") || starts("WITH"))
        && !exec::may_hold_several(sql)
        && conn.prepare_cached(sql).is_ok_and(|s| s.readonly())
}

/// Runs `sql`, counting it in the connection's `Durability` if it may commit, and
/// notes what it changed: whether a `SAVEPOINT` began a transaction, whether commits
/// sync, whether a checkpoint ran.
fn run_noting(inner: &mut Inner, sql: &str, args: &[AnyValueKind<'_>]) -> Result<Results, Error> {
    let kind = inner.kind(sql);
    run_as(inner, &kind, sql, args)
}

/// `run_noting`, with the statement's `Kind` found already.
fn run_as(
    inner: &mut Inner,
    kind: &Kind,
    sql: &str,
    args: &[AnyValueKind<'_>],
) -> Result<Results, Error> {
    let before = inner.conn.is_autocommit();
    let counted = kind.commits && inner.pipelined();
    let durability = inner.durability.clone().filter(|_| counted);
    let counting = durability.as_ref().map(|d| d.begin_commit());
    let checkpoint_seen = durability.as_ref().map(|d| d.others_checkpoint());
    let out = exec::run(inner, sql, args);
    drop(counting);
    if let (Some(d), Some(seen)) = (&durability, checkpoint_seen) {
        d.commit_followed(seen);
    }
    if inner.conn.is_autocommit() {
        inner.savepoint_began_it = false;
    } else if before && sql.trim_start().starts_with("SAVEPOINT") {
        inner.savepoint_began_it = true;
    }
    if kind.pragma {
        inner.commits_sync = commits_sync(&inner.conn);
        inner.busy = here::busy_timeout(&inner.conn);
    }
    if kind.checkpoints {
        inner.after_checkpoint = true;
    } else if kind.commits {
        inner.after_checkpoint = false;
    }
    out
}

/// Whether SQLite syncs each commit on this connection (`synchronous` ≥ `FULL`).
fn commits_sync(conn: &rusqlite::Connection) -> bool {
    conn.pragma_query_value(None, "synchronous", |r| r.get::<_, i64>(0))
        .map_or(true, |level| level >= 2)
}

impl std::fmt::Debug for InlineConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineConnection")
            .field("depth", &self.depth)
            .finish_non_exhaustive()
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // A panic while a statement ran leaves the connection as SQLite left it, which is
    // consistent: SQLite's own state does not depend on our code finishing.
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a statement may do, as far as where it runs and what it counts are concerned.
struct Kind {
    /// It begins a transaction: `BEGIN IMMEDIATE` waits up to `busy_timeout` if another
    /// connection writes.
    begins: bool,
    /// It may commit: a `COMMIT`, the `RELEASE` of a savepoint that began the
    /// transaction, or a statement outside one that may write (it commits itself).
    commits: bool,
    checkpoints: bool,
    pragma: bool,
    /// It only reads, outside a transaction (`only_reads`): a lone `SELECT` (or `WITH`
    /// that selects). Anything else outside a transaction (a leading comment, `VALUES`)
    /// goes to the disk thread, which is safe, only slower.
    reads: bool,
}

impl Kind {
    /// `reads`: the statement is one that only reads (`only_reads`), outside a
    /// transaction.
    fn of(sql: &str, autocommit: bool, savepoint_began_it: bool, reads: bool) -> Kind {
        let head = sql.trim_start();
        let begins = head.starts_with("BEGIN");
        let pragma = head.starts_with("PRAGMA");
        let reads = reads && autocommit;
        Kind {
            begins,
            commits: sql.contains("COMMIT")
                || (savepoint_began_it && sql.contains("RELEASE"))
                || (autocommit && !reads && !pragma && !begins && !head.starts_with("SAVEPOINT")),
            checkpoints: sql.contains("wal_checkpoint"),
            pragma,
            reads,
        }
    }

    /// Whether it may wait for the disk or another connection, and so runs on the disk
    /// thread. A commit inside a transaction does not when the connection is pipelined
    /// (it writes the WAL and the `Durability` syncs it), except the first after a
    /// checkpoint, which may start the WAL over and sync its header (`fast_commits`
    /// is `Inner::fast_commits`).
    fn waits_for_disk(&self, autocommit: bool, fast_commits: bool) -> bool {
        let fast_commit = fast_commits && !autocommit;
        self.begins
            || self.checkpoints
            || (self.commits && !fast_commit)
            || (autocommit && !self.pragma && !self.reads)
    }

    /// Whether it runs on the disk thread: it may wait for the disk, and the caller's
    /// thread may not (`here_may_wait`: `this_thread_may_wait_for_disk`), or it is a
    /// checkpoint, which stays there even then so that the group's callers are answered
    /// while it runs.
    fn runs_on_disk_thread(
        &self,
        autocommit: bool,
        fast_commits: bool,
        here_may_wait: bool,
    ) -> bool {
        self.waits_for_disk(autocommit, fast_commits) && (!here_may_wait || self.checkpoints)
    }
}

type Results = Vec<Either<AnyQueryResult, AnyRow>>;

/// Sends `f` to the disk thread, behind every job sent before it; the connection's
/// later statements go there too until it has run (`pending`).
fn on_disk<T: Send + 'static>(
    disk: &DiskThread,
    pending: &Arc<AtomicUsize>,
    f: impl FnOnce() -> T + Send + 'static,
) -> impl std::future::Future<Output = Result<T, Error>> + Send + 'static {
    pending.fetch_add(1, Ordering::SeqCst);
    let done = Done(pending.clone());
    disk.run(move || {
        let _done = done;
        f()
    })
}

impl InlineConnection {
    async fn open(
        path: String,
        durability: Option<Arc<Durability>>,
    ) -> Result<InlineConnection, Error> {
        let disk = DiskThread::start()?;
        let conn = disk
            .run(move || {
                rusqlite::Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE
                        | OpenFlags::SQLITE_OPEN_CREATE
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
            })
            .await?
            .map_err(exec::to_sqlx)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let commits_sync = commits_sync(&conn);
        let busy = here::busy_timeout(&conn);
        let deadline = here::install(&conn);
        if let Some(d) = &durability {
            let file = conn.path().filter(|p| !p.is_empty()).ok_or_else(|| {
                Error::Configuration("commit pipelining needs a database file".into())
            })?;
            d.set_wal(file);
        }
        Ok(InlineConnection {
            inner: Arc::new(Mutex::new(Inner {
                conn,
                shapes: Default::default(),
                splits: Default::default(),
                savepoint_began_it: false,
                durability,
                commits_sync,
                after_checkpoint: true,
                busy,
                deadline,
            })),
            disk,
            pending: Arc::new(AtomicUsize::new(0)),
            depth: 0,
        })
    }

    /// Closes the connection on its disk thread (closing may checkpoint), which then
    /// ends.
    async fn close(self) -> Result<(), Error> {
        let InlineConnection {
            inner,
            disk,
            pending,
            ..
        } = self;
        on_disk(&disk, &pending, move || drop(inner)).await
    }

    /// Runs `sql` with `args`: here, or on the disk thread if it may wait for the disk
    /// or a job sent there is still pending.
    fn run<'q>(
        &mut self,
        sql: &'q str,
        args: Vec<AnyValueKind<'q>>,
    ) -> BoxFuture<'q, Result<Results, Error>> {
        let inner = self.inner.clone();
        if self.pending.load(Ordering::SeqCst) == 0 {
            let mut g = lock(&inner);
            let autocommit = g.conn.is_autocommit();
            let kind = g.kind(sql);
            let out = if kind.runs_on_disk_thread(autocommit, g.fast_commits(), may_wait_here()) {
                None
            } else if kind.reads {
                here::without_waiting(&mut g, &kind, sql, &args)
            } else {
                Some(run_as(&mut g, &kind, sql, &args))
            };
            if let Some(out) = out {
                return Box::pin(std::future::ready(out));
            }
        }
        let sql = sql.to_owned();
        let args: Vec<AnyValueKind<'static>> = args.into_iter().map(exec::owned).collect();
        let answer = on_disk(&self.disk, &self.pending, move || {
            run_noting(&mut lock(&inner), &sql, &args)
        });
        Box::pin(async move { answer.await? })
    }

    async fn execute(&mut self, sql: &str) -> Result<(), Error> {
        self.run(sql, Vec::new()).await.map(drop)
    }
}

impl InlineConnection {
    fn fetch<'q>(
        &'q mut self,
        query: &'q str,
        arguments: Option<AnyArguments<'q>>,
    ) -> BoxFuture<'q, Result<Results, Error>> {
        let args = arguments.map(|a| a.values.0).unwrap_or_default();
        self.run(query, args)
    }
}
