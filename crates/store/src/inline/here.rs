//! Statements that may wait, run on the caller's thread when they need not.
//!
//! A read outside a transaction runs on the caller's thread, a tokio worker (`mod.rs`).
//! Two things could hold it there: another connection's lock (`SQLITE_BUSY`: in WAL mode
//! only while a WAL is recovered, or on a file where WAL was refused), for which
//! SQLite's busy handler sleeps up to `busy_timeout`; and a read that walks many rows (a
//! report over a year of payments). So while it runs here the busy handler is off, and
//! a progress handler interrupts it once it has run for [`BUDGET`]. Either failure
//! leaves nothing behind (a read is simply read again), and the statement goes to the
//! connection's disk thread instead, where it may wait and run as long as it needs.
//!
//! The writer's `BEGIN` could be tried here the same way (it waits only while another
//! process holds the file's write lock). Measured, it saved about 50 µs per webhook
//! batch (1.03–1.06× on webhooks) but halved the checkout's groups, since fewer callers
//! queued behind a quicker `BEGIN`, and its p99 rose (BENCHMARKS.md): not kept. The
//! webhook lane's `BEGIN` does run on its caller's thread, because that thread is the
//! lane's own, not a tokio worker, and may wait (`this_thread_may_wait_for_disk`).

use std::ffi::c_int;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sqlx::Error;
use sqlx_core::any::AnyValueKind;

use super::{run_as, Inner, Kind, Results};

/// How long a statement may run on the caller's thread before it is moved to the disk
/// thread. A read of a page of rows by an index takes tens of microseconds.
pub(super) const BUDGET: Duration = Duration::from_millis(2);

/// SQLite's virtual machine steps between two looks at the clock (a few microseconds).
const STEPS_BETWEEN_LOOKS: c_int = 1000;

/// Nanoseconds since the first look, never 0 (0 means "no deadline").
fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX) | 1
}

/// Gives the connection a progress handler that interrupts its statement once the
/// returned deadline (set by [`without_waiting`]) has passed.
pub(super) fn install(conn: &rusqlite::Connection) -> Arc<AtomicU64> {
    let deadline = Arc::new(AtomicU64::new(0));
    let seen = deadline.clone();
    conn.progress_handler(
        STEPS_BETWEEN_LOOKS,
        Some(move || {
            let d = seen.load(Ordering::Relaxed);
            d != 0 && now_ns() > d
        }),
    );
    deadline
}

/// Runs `sql` (a read outside a transaction) here unless it would wait: `None` if
/// another connection's lock stood in its way or it ran past [`BUDGET`], having done
/// nothing; then it goes to the disk thread.
pub(super) fn without_waiting(
    inner: &mut Inner,
    kind: &Kind,
    sql: &str,
    args: &[AnyValueKind<'_>],
) -> Option<Result<Results, Error>> {
    let _ = inner.conn.busy_timeout(Duration::ZERO);
    let budget = u64::try_from(BUDGET.as_nanos()).unwrap_or(u64::MAX);
    inner
        .deadline
        .store(now_ns().saturating_add(budget), Ordering::Relaxed);
    let out = run_as(inner, kind, sql, args);
    inner.deadline.store(0, Ordering::Relaxed);
    let _ = inner.conn.busy_timeout(inner.busy);
    match out {
        Err(e) if gave_way(&e) && inner.conn.is_autocommit() => None,
        other => Some(other),
    }
}

/// The statement stopped for another connection's lock (`SQLITE_BUSY`) or for the
/// budget (`SQLITE_INTERRUPT`), with any of their extended codes.
fn gave_way(e: &Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| {
            let primary = c & 0xff;
            primary == rusqlite::ffi::SQLITE_BUSY || primary == rusqlite::ffi::SQLITE_INTERRUPT
        })
}

/// How long SQLite waits for another connection's lock on this one.
pub(super) fn busy_timeout(conn: &rusqlite::Connection) -> Duration {
    let ms = conn
        .pragma_query_value(None, "busy_timeout", |r| r.get::<_, i64>(0))
        .unwrap_or(0);
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
