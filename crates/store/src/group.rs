//! SQLite's one writer connection, with group commit.
//!
//! Every write transaction on SQLite runs on one connection, one caller after another.
//! With `synchronous=FULL` each `COMMIT` is an fsync, so before this the writer did one
//! fsync per transaction and API writes were bound by the disk's fsync rate.
//!
//! Now the callers' transactions are members of a *group*: one outer transaction
//! (`BEGIN IMMEDIATE`), in which each member is a savepoint.
//!
//! - `begin` takes the connection (an async lock, in arrival order), opens the outer
//!   transaction if none is open, and then `SAVEPOINT pb_member`. The member derefs to
//!   the connection, so repository functions run on it as on any transaction.
//! - `commit` ends the member; its savepoint is released by the next statement sent
//!   (the next member's `SAVEPOINT` or the group's `COMMIT`, in the same round trip to
//!   the connection's thread: one fewer per transaction). If no one else is waiting for the connection, or
//!   the group holds [`MAX_MEMBERS`] members or is [`MAX_AGE`] old (by default), it commits the outer
//!   transaction (one fsync for the whole group) and hands every member the outcome.
//!   Otherwise it hands the connection on and waits for the group's outcome. Either
//!   way `commit` returns only once its work is durable, or with an error.
//! - A member dropped without `commit` is rolled back to its savepoint (by the next user
//!   of the connection, before anything else; or by a task spawned at the drop, which
//!   then commits the others if no one else comes). The others are not touched.
//! - If the outer `COMMIT` fails, or SQLite rolled the whole transaction back (its
//!   savepoint is gone), every member of the group gets an error. None of them was
//!   answered yet, so no acknowledged write is lost.
//!
//! Readers on other connections see a group all at once, when its `COMMIT` returns, so
//! the event hub, which follows `events` by `seq`, sees no gap: a rolled-back savepoint
//! rolls back its `seq` too (`AUTOINCREMENT`'s counter is in the same transaction), and
//! the next member reuses it.
//!
//! Commit pipelining (`inline/durable.rs`): the `COMMIT` only writes the WAL, the
//! writer goes on to the next group, and the group's members are answered by the WAL's
//! fsync thread once their commit is durable. Readers may therefore see a group up to
//! one fsync before it is durable; what passes a read on waits for it (`read.rs`).
//!
//! A caveat, the usual one of group commit: a member sees the writes of the members
//! before it in its group (and, pipelined, of the group before) before they are
//! durable. If that group's `COMMIT` then fails,
//! a member that read them and answered without committing (an error path, such as a
//! conflict) answered on writes that were never made. Members that commit are answered
//! only with the group's outcome.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{AnyConnection, Connection, Executor};
use tokio::sync::{watch, Mutex, OwnedMutexGuard};

use crate::inline::Durability;

/// A group commits once it has this many members, even while others wait (the
/// default of `DbOptions::group_max_members`).
pub const MAX_MEMBERS: u64 = 64;
/// A group commits at the end of the first member that finds it this old, even while
/// others wait: the first member's wait is bounded by this plus one member's turn and
/// the fsync (the default of `DbOptions::group_max_age`).
pub const MAX_AGE: Duration = Duration::from_millis(5);
/// A member still without its group's outcome after this long takes the connection and
/// commits the group itself. It happens only if the caller the connection was handed
/// to went away before taking it (its future dropped while it waited).
const RESCUE_AFTER: Duration = Duration::from_millis(50);

const SAVEPOINT: &str = "SAVEPOINT pb_member";
const BEGIN: &str = "BEGIN IMMEDIATE; SAVEPOINT pb_member";
/// A member's savepoint is released by the next round trip to the connection, not one
/// of its own: the next member's `SAVEPOINT`, or the group's `COMMIT`. If SQLite rolled
/// the whole transaction back meanwhile, the `RELEASE` fails (its savepoint is gone),
/// and the group fails with it, as a `RELEASE` of its own would have.
const RELEASE_THEN_SAVEPOINT: &str = "RELEASE pb_member; SAVEPOINT pb_member";
const RELEASE_THEN_COMMIT: &str = "RELEASE pb_member; COMMIT";
const UNDO: &str = "ROLLBACK TO pb_member; RELEASE pb_member";

/// A group's outcome: `None` while it is open.
type Outcome = Option<Result<(), Arc<str>>>;

/// The writer's connection, locked. How long it is held is counted
/// (`GroupCommits::held`): near the whole wall time, the writer is the bound.
struct Guard {
    state: OwnedMutexGuard<State>,
    since: Instant,
    held: Arc<AtomicU64>,
}

impl Guard {
    fn new(state: OwnedMutexGuard<State>, held: &Arc<AtomicU64>) -> Guard {
        Guard {
            state,
            since: Instant::now(),
            held: held.clone(),
        }
    }
}

impl Deref for Guard {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

impl DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.state
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let ns = u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.held.fetch_add(ns, Ordering::Relaxed);
    }
}

/// How many group commits and committed transactions the writer has made (for tests
/// and benchmarks: `transactions / commits` is the mean group size), and how long its
/// connection has been held by someone (a caller's transaction, a commit, a
/// checkpoint).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommits {
    pub commits: u64,
    pub transactions: u64,
    pub held: Duration,
    /// The writer's steps of the background checkpoint, and how long they held it
    /// (part of `held`): every write waits meanwhile.
    pub checkpoint_steps: u64,
    pub checkpoint_held: Duration,
}

pub(crate) struct Writer {
    state: Arc<Mutex<State>>,
    /// Callers waiting for the connection (in `lock`).
    waiting: AtomicUsize,
    acquire_timeout: Duration,
    max_age: Duration,
    max_members: u64,
    commits: AtomicU64,
    checkpoint_steps: AtomicU64,
    /// Nanoseconds the writer's checkpoint steps held the connection.
    checkpoint_held: AtomicU64,
    transactions: AtomicU64,
    /// Nanoseconds the connection has been held (`Guard`).
    held: Arc<AtomicU64>,
    /// The background checkpointer found the writer busy: the writer runs the step
    /// itself after its next group commit.
    checkpoint_wanted: AtomicBool,
    closed: AtomicBool,
    /// Commit pipelining: the connection's commits do not sync, this makes them
    /// durable, and a group's members are answered by it (`inline/durable.rs`).
    pub(crate) durability: Option<Arc<Durability>>,
    /// The last group whose `COMMIT` succeeded (its members wait only for its fsync).
    committed_group: AtomicU64,
}

pub(crate) struct State {
    conn: Option<AnyConnection>,
    group: Option<Group>,
    /// A member was dropped with its savepoint open: undone before the next use.
    abandoned: bool,
    /// The last member that ended in the open group still has its savepoint open (it is
    /// released with the next statement sent; see `RELEASE_THEN_SAVEPOINT`).
    release_pending: bool,
    next_group: u64,
}

struct Group {
    id: u64,
    started: Instant,
    members: u64,
    /// Its outcome once it is durable.
    done: watch::Sender<Outcome>,
    /// Its outcome once its `COMMIT` returned: seen by every later transaction and
    /// reader, durable only with `done` when pipelined.
    made: watch::Sender<Outcome>,
}

fn conn(g: &mut Guard) -> &mut AnyConnection {
    g.conn
        .as_mut()
        .expect("the writer's connection is present while it is locked and open")
}

fn group_error(why: &str) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::other(format!(
        "the group commit of this transaction failed: {why}"
    )))
}

struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Writer {
    pub(crate) fn new(
        conn: AnyConnection,
        opts: &crate::DbOptions,
        durability: Option<Arc<Durability>>,
    ) -> Writer {
        Writer {
            state: Arc::new(Mutex::new(State {
                conn: Some(conn),
                group: None,
                abandoned: false,
                release_pending: false,
                next_group: 0,
            })),
            waiting: AtomicUsize::new(0),
            acquire_timeout: opts.acquire_timeout,
            max_age: opts.group_max_age,
            max_members: opts.group_max_members.max(1),
            commits: AtomicU64::new(0),
            checkpoint_steps: AtomicU64::new(0),
            checkpoint_held: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
            held: Arc::new(AtomicU64::new(0)),
            checkpoint_wanted: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            durability,
            committed_group: AtomicU64::new(0),
        }
    }

    /// The last commit a read made now could see (0 without pipelining: every commit
    /// is durable when seen).
    pub(crate) fn visible(&self) -> u64 {
        self.durability.as_ref().map_or(0, |d| d.visible())
    }

    /// Returns once commit `upto` (a `visible()`) and all before it are durable.
    pub(crate) async fn durable(&self, upto: u64) -> Result<(), sqlx::Error> {
        match &self.durability {
            Some(d) if upto > 0 => d.wait(upto).await.map_err(|why| group_error(&why)),
            _ => Ok(()),
        }
    }

    pub(crate) fn counts(&self) -> GroupCommits {
        GroupCommits {
            commits: self.commits.load(Ordering::SeqCst),
            transactions: self.transactions.load(Ordering::SeqCst),
            held: Duration::from_nanos(self.held.load(Ordering::Relaxed)),
            checkpoint_steps: self.checkpoint_steps.load(Ordering::Relaxed),
            checkpoint_held: Duration::from_nanos(self.checkpoint_held.load(Ordering::Relaxed)),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Takes the connection, in arrival order, and undoes an abandoned member's work.
    async fn lock(self: &Arc<Self>) -> Result<Guard, sqlx::Error> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let counted = Counted(&self.waiting);
        let locked =
            tokio::time::timeout(self.acquire_timeout, self.state.clone().lock_owned()).await;
        drop(counted);
        let mut g = Guard::new(locked.map_err(|_| sqlx::Error::PoolTimedOut)?, &self.held);
        if g.conn.is_none() {
            return Err(sqlx::Error::PoolClosed);
        }
        if g.abandoned {
            g.abandoned = false;
            if let Err(e) = conn(&mut g).execute(UNDO).await {
                // The savepoint is gone: SQLite rolled the whole transaction back.
                self.fail_group(&mut g, &e.to_string()).await;
            }
        }
        Ok(g)
    }

    /// Locks the connection with no group open (committing the open one first), for
    /// work that must run outside any transaction (migrations, closing).
    pub(crate) async fn exclusive(self: &Arc<Self>) -> Result<Exclusive, sqlx::Error> {
        let mut g = self.lock().await?;
        self.commit_group(&mut g).await;
        Ok(Exclusive(g))
    }

    pub(crate) async fn begin(self: &Arc<Self>) -> Result<Member, sqlx::Error> {
        if self.durability.as_ref().is_some_and(|d| d.failed()) {
            // Nothing could be promised durable: take no more work (as PostgreSQL stops
            // after a failed fsync). A restart recovers from what is on disk.
            return Err(group_error("an fsync of the WAL failed; restart paybridge"));
        }
        let mut g = self.lock().await?;
        let fresh = g.group.is_none();
        let sql = match (fresh, g.release_pending) {
            (true, _) => BEGIN,
            (false, true) => RELEASE_THEN_SAVEPOINT,
            (false, false) => SAVEPOINT,
        };
        g.release_pending = false;
        if let Err(e) = conn(&mut g).execute(sql).await {
            self.fail_group(&mut g, &e.to_string()).await;
            return Err(e);
        }
        if fresh {
            g.next_group += 1;
            g.group = Some(Group {
                id: g.next_group,
                started: Instant::now(),
                members: 0,
                done: watch::channel(None).0,
                made: watch::channel(None).0,
            });
        }
        Ok(Member {
            writer: self.clone(),
            guard: Some(g),
        })
    }

    fn due(&self, group: &Group) -> bool {
        self.waiting.load(Ordering::SeqCst) == 0
            || group.members >= self.max_members
            || group.started.elapsed() >= self.max_age
    }

    /// A member's work is released into its group: commit the group now, or hand the
    /// connection on and wait for the group's outcome: once durable, or (`durable`
    /// false) once its `COMMIT` returned.
    async fn end_member(self: &Arc<Self>, mut g: Guard, durable: bool) -> Result<(), sqlx::Error> {
        let Some(group) = g.group.as_mut() else {
            return Err(group_error("the group was closed under the member"));
        };
        group.members += 1;
        let id = group.id;
        let rx = if durable {
            group.done.subscribe()
        } else {
            group.made.subscribe()
        };
        let due = self.due(group);
        g.release_pending = true;
        if due {
            // Committed in a task of its own, so that a caller that goes away meanwhile
            // (its future dropped) cannot leave the group half-done.
            let me = self.clone();
            tokio::spawn(async move {
                let mut g = g;
                me.commit_group(&mut g).await;
                drop(g);
                // On a thread that may wait for the disk (the webhook lane's), the
                // group is fsynced here, with the writer handed on, rather than by the
                // fsync thread: no wake-up of that thread and back.
                if crate::inline::may_wait_here() {
                    if let Some(d) = &me.durability {
                        d.sync_here();
                    }
                }
            });
        } else {
            drop(g);
        }
        self.outcome(id, rx).await
    }

    /// Waits for the outcome of group `id`; commits it itself if no one did in time.
    async fn outcome(
        self: &Arc<Self>,
        id: u64,
        mut rx: watch::Receiver<Outcome>,
    ) -> Result<(), sqlx::Error> {
        loop {
            // The watch's read guard must not live across the await below.
            let waited = tokio::time::timeout(RESCUE_AFTER, rx.wait_for(Option::is_some))
                .await
                .map(|r| r.map(|outcome| outcome.clone()));
            match waited {
                Ok(Ok(outcome)) => {
                    return match outcome {
                        Some(Err(why)) => Err(group_error(&why)),
                        _ => Ok(()),
                    };
                }
                Ok(Err(_)) => return Err(group_error("its outcome was lost")),
                // Committed: the outcome comes with the WAL's fsync (pipelined), however
                // slow the disk; nothing to rescue.
                Err(_) if self.committed_group.load(Ordering::SeqCst) >= id => {}
                Err(_) => {
                    let mut g = self.lock().await?;
                    if g.group.as_ref().is_some_and(|gr| gr.id == id) {
                        self.commit_group(&mut g).await;
                    } else {
                        // Ours was committed meanwhile; the one open now may have
                        // been handed to us: commit it if no one else will.
                        self.settle(g).await;
                    }
                }
            }
        }
    }

    /// After a member ended without joining the group (rolled back or dropped): commit
    /// the group if no one else will, else hand the connection on.
    async fn settle(self: &Arc<Self>, mut g: Guard) {
        if g.group.as_ref().is_some_and(|gr| self.due(gr)) {
            self.commit_group(&mut g).await;
        }
    }

    /// Commits the open group, if any, and tells its members.
    async fn commit_group(&self, g: &mut Guard) {
        let Some(group) = g.group.take() else {
            return;
        };
        let sql = if g.release_pending {
            RELEASE_THEN_COMMIT
        } else {
            "COMMIT"
        };
        g.release_pending = false;
        let c = conn(g);
        let r = c.execute(sql).await;
        if r.is_err() {
            // Whatever SQLite left open, nothing of this group stays.
            let _ = c.execute("ROLLBACK").await;
        }
        let outcome = r
            .map(drop)
            .map_err(|e| Arc::<str>::from(e.to_string().as_str()));
        if outcome.is_ok() {
            if group.members > 0 {
                self.commits.fetch_add(1, Ordering::SeqCst);
                self.transactions.fetch_add(group.members, Ordering::SeqCst);
            }
            self.committed_group.store(group.id, Ordering::SeqCst);
        }
        group.made.send_replace(Some(outcome.clone()));
        match (outcome, &self.durability) {
            // Pipelined: the members are answered once the WAL's fsync covers this
            // commit; the writer goes on to the next group meanwhile.
            (Ok(()), Some(d)) => {
                let done = group.done;
                d.when_durable(d.visible(), move |outcome| {
                    done.send_replace(Some(outcome));
                });
            }
            (outcome, _) => {
                group.done.send_replace(Some(outcome));
            }
        }
        if self.checkpoint_wanted.swap(false, Ordering::SeqCst) {
            self.checkpoint_step(c).await;
        }
    }

    /// The group cannot commit (SQLite rolled it back, or a savepoint step failed):
    /// roll back what is left and tell every member.
    async fn fail_group(&self, g: &mut Guard, why: &str) {
        g.abandoned = false;
        g.release_pending = false;
        let _ = conn(g).execute("ROLLBACK").await;
        if let Some(group) = g.group.take() {
            tracing::warn!(
                members = group.members,
                error = why,
                "a transaction group was rolled back"
            );
            let outcome: Arc<str> = Arc::from(format!("rolled back: {why}").as_str());
            group.made.send_replace(Some(Err(outcome.clone())));
            group.done.send_replace(Some(Err(outcome)));
        }
    }

    /// The writer's step of the background checkpoint: run now if the writer is idle
    /// (never waiting for it), else left to the writer after its next group commit.
    pub(crate) async fn checkpoint_when_idle(&self) {
        match self.state.clone().try_lock_owned() {
            Ok(g) if g.group.is_none() && !g.abandoned && g.conn.is_some() => {
                self.checkpoint_step(conn(&mut Guard::new(g, &self.held)))
                    .await;
            }
            _ => self.checkpoint_wanted.store(true, Ordering::SeqCst),
        }
    }

    /// Runs the writer's checkpoint step on its connection, counted.
    async fn checkpoint_step(&self, c: &mut AnyConnection) {
        let since = Instant::now();
        if let Err(e) = c.execute("PRAGMA wal_checkpoint(PASSIVE)").await {
            tracing::debug!(error = %e, "WAL checkpoint on the writer failed; trying again shortly");
        }
        let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.checkpoint_held.fetch_add(ns, Ordering::Relaxed);
        self.checkpoint_steps.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) async fn close(self: &Arc<Self>) {
        if let Ok(mut x) = self.exclusive().await {
            self.closed.store(true, Ordering::SeqCst);
            if let Some(c) = x.0.conn.take() {
                let _ = c.close().await;
            }
        }
        self.closed.store(true, Ordering::SeqCst);
    }
}

/// The writer's connection with no group open.
pub(crate) struct Exclusive(Guard);

impl Deref for Exclusive {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        self.0
            .conn
            .as_ref()
            .expect("the writer's connection is present while it is locked and open")
    }
}

impl DerefMut for Exclusive {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        conn(&mut self.0)
    }
}

/// One caller's transaction in a group: a savepoint on the writer's connection.
pub struct Member {
    writer: Arc<Writer>,
    guard: Option<Guard>,
}

impl Member {
    /// The writer, taken from the member as it ends.
    fn take(&mut self) -> Guard {
        self.guard
            .take()
            .expect("a member holds the writer until it ends")
    }

    /// Returns once this member's work is durable (its group committed), or with an
    /// error if it is not (the group failed; none of its work stays).
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        let g = self.take();
        self.writer.end_member(g, true).await
    }

    /// Returns once this member's group has committed, maybe before it is durable
    /// (pipelined): later transactions and readers see its work. What the caller passes
    /// on after this waits for durability as a read's does: it is noted for
    /// `answer_durably`, and calls to Stripe wait for it (`Db::durable`).
    pub(crate) async fn commit_visible(mut self) -> Result<(), sqlx::Error> {
        let g = self.take();
        self.writer.end_member(g, false).await?;
        crate::read::note(&self.writer);
        Ok(())
    }

    pub(crate) async fn rollback(mut self) -> Result<(), sqlx::Error> {
        let mut g = self.take();
        if let Err(e) = conn(&mut g).execute(UNDO).await {
            self.writer.fail_group(&mut g, &e.to_string()).await;
            return Err(e);
        }
        self.writer.settle(g).await;
        Ok(())
    }
}

impl Deref for Member {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        self.guard
            .as_ref()
            .and_then(|g| g.conn.as_ref())
            .expect("a member holds the writer until it ends")
    }
}

impl DerefMut for Member {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        conn(
            self.guard
                .as_mut()
                .expect("a member holds the writer until it ends"),
        )
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let Some(mut g) = self.guard.take() else {
            return;
        };
        g.abandoned = true;
        drop(g);
        // The next user of the connection undoes it. If no one comes, this task does,
        // and commits the members that wait.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let w = self.writer.clone();
            rt.spawn(async move {
                if let Ok(g) = w.lock().await {
                    w.settle(g).await;
                }
            });
        }
    }
}
