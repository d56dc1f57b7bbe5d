//! The SQLite writer's connection, driven on the caller's thread.
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
//! cached. What can wait for the disk runs on tokio's blocking pool instead, so that a
//! worker thread never waits for an fsync: a `COMMIT` (the group's one fsync), and any
//! statement outside a transaction (it commits, and syncs, on its own).
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
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use rusqlite::OpenFlags;
use sqlx::any::{AnyArguments, AnyQueryResult, AnyRow};
use sqlx::{Either, Error};
use sqlx_core::any::driver::AnyDriver;
use sqlx_core::any::AnyValueKind;

mod driver;
mod exec;
#[cfg(test)]
mod tests;
mod typed;

pub use driver::InlineOptions;
pub use typed::InlineSqlite;

pub(crate) const SCHEME: &str = "sqlite-inline";

/// The driver, installed beside sqlx's own (`crate::install_drivers`).
pub(crate) const DRIVER: AnyDriver = AnyDriver::without_migrate::<InlineSqlite>();

/// How many prepared statements the connection keeps (the writer runs a few dozen
/// distinct texts; lists of ids make a few more).
const STATEMENT_CACHE: usize = 512;

/// The writer's connection. The `rusqlite` connection is behind a mutex only so that a
/// statement that waits for the disk can run on the blocking pool; the connection is
/// used by one task at a time, so the mutex is never contended but by a `COMMIT` still
/// finishing on the blocking pool after its caller went away.
pub struct InlineConnection {
    inner: Arc<Mutex<Inner>>,
    depth: usize,
}

struct Inner {
    conn: rusqlite::Connection,
    /// Column names and columns of each statement text that returns rows.
    shapes: std::collections::HashMap<Box<str>, Arc<exec::Shape>>,
    /// Where each statement of a multi-statement text starts and ends.
    splits: std::collections::HashMap<Box<str>, Arc<[Range<usize>]>>,
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

/// Whether a statement may wait for the disk: it commits a transaction, or runs
/// outside one (so it commits itself), or checkpoints.
fn waits_for_disk(sql: &str, autocommit: bool) -> bool {
    let head = sql.trim_start();
    sql.contains("COMMIT")
        || sql.contains("wal_checkpoint")
        || (autocommit && !head.starts_with("BEGIN") && !head.starts_with("PRAGMA"))
}

type Results = Vec<Either<AnyQueryResult, AnyRow>>;

impl InlineConnection {
    fn open(path: &str) -> Result<InlineConnection, Error> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(exec::to_sqlx)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(InlineConnection {
            inner: Arc::new(Mutex::new(Inner {
                conn,
                shapes: Default::default(),
                splits: Default::default(),
            })),
            depth: 0,
        })
    }

    /// Runs `sql` with `args`: here, or on the blocking pool if it may wait for the
    /// disk.
    fn run<'q>(
        &mut self,
        sql: &'q str,
        args: Vec<AnyValueKind<'q>>,
    ) -> BoxFuture<'q, Result<Results, Error>> {
        let inner = self.inner.clone();
        let autocommit = lock(&inner).conn.is_autocommit();
        if !waits_for_disk(sql, autocommit) {
            let out = exec::run(&mut lock(&inner), sql, &args);
            return Box::pin(std::future::ready(out));
        }
        let sql = sql.to_owned();
        let args: Vec<AnyValueKind<'static>> = args.into_iter().map(exec::owned).collect();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || exec::run(&mut lock(&inner), &sql, &args))
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "a statement on the SQLite writer panicked");
                    Error::WorkerCrashed
                })?
        })
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
