//! Commit pipelining: the writer's commits made durable by a thread of their own.
//!
//! With `synchronous=FULL` SQLite fsyncs the WAL inside each `COMMIT`, and the one
//! writer waits for it: more than half of its busy time under load (BENCHMARKS.md).
//! With `synchronous=NORMAL` a `COMMIT` only writes its frames to the WAL; a
//! [`Durability`] then makes them durable. Its thread fsyncs the WAL file, and each
//! commit's callers are told once an fsync that began after their `COMMIT` returned has
//! finished. Meanwhile the writer applies the next group. One fsync covers every commit
//! before it, so fsyncs group themselves too: the commits that return while one is in
//! flight wait for the next. A thread that may wait for the disk (the webhook lane's
//! own, `this_thread_may_wait_for_disk`) fsyncs its group's commit itself
//! ([`Durability::sync_here`]) instead of waiting for this thread to wake; fsyncs are
//! taken one at a time either way.
//!
//! The price: other connections see a commit when its `COMMIT` returns, up to one fsync
//! before it is durable. Whatever passes on what a reader saw (an HTTP response, the
//! event hub) first waits until every commit that reader could see is durable
//! ([`Durability::wait`], `Db::durable` and `Db::answer_durably`). A process killed
//! with kill -9 loses nothing either way (its writes are in the kernel's page cache);
//! what the wait guards against is a power cut or a kernel crash.
//!
//! Every statement that may commit is counted before it runs (`begin_commit`) and after
//! (`end_commit`), by the connection that runs it (`InlineConnection`), so a commit
//! cannot be seen before it is counted: a reader's watermark ([`Durability::visible`])
//! taken after its read covers what it read.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

/// What a commit's callers are told: durable, or why it cannot be promised.
pub type Outcome = Result<(), Arc<str>>;

type Waiter = Box<dyn FnOnce(Outcome) + Send>;

/// Makes a WAL file's commits durable, in order, and tells who waits for them.
pub struct Durability {
    shared: Arc<Shared>,
}

struct Shared {
    /// The WAL file, as SQLite names it (set by the connection that opens the database:
    /// `set_wal`), and the descriptor kept open on it once the first fsync is due: a
    /// descriptor opened after a write-back error was reported elsewhere would not see
    /// it.
    wal: Mutex<(Option<PathBuf>, Option<std::fs::File>)>,
    state: Mutex<State>,
    /// The thread waits here for commits to sync (or for `closed`).
    work: Condvar,
    /// Commits begun: a reader may see any of them.
    started: AtomicU64,
    /// Checkpoints by other connections (the background checkpointer's reader
    /// passes): odd while one runs. One that copies the whole WAL lets the writer's
    /// next commit start the WAL over, and SQLite syncs the new header inside that
    /// commit, so it must not run on the caller's thread.
    others_checkpoint: AtomicU64,
    /// The `others_checkpoint` a commit has followed since (see `commit_followed`).
    followed: AtomicU64,
    /// Tests: the next fsync fails, and its thread waits this long before it records
    /// that.
    #[cfg(test)]
    fail_next: Mutex<Option<std::time::Duration>>,
}

#[derive(Default)]
struct State {
    /// Commits whose statement has returned: the next fsync covers them.
    finished: u64,
    /// Every commit up to here is durable.
    synced: u64,
    /// An fsync failed: from then on no commit can be promised durable (the kernel may
    /// have dropped the failed pages; PostgreSQL stops for the same reason).
    failed: Option<Arc<str>>,
    /// Waiting for commit `.0` to be durable.
    waiters: VecDeque<(u64, Waiter)>,
    closed: bool,
    /// Tests hold the fsync thread back, to see what waits for it.
    paused: bool,
}

impl State {
    /// Commit `upto`'s outcome, if it is known already.
    fn known(&self, upto: u64) -> Option<Outcome> {
        match &self.failed {
            Some(why) => Some(Err(why.clone())),
            None => (self.synced >= upto).then_some(Ok(())),
        }
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Durability {
    /// Starts the fsync thread. The connection whose commits it makes durable names the
    /// WAL file (`set_wal`) before its first commit.
    pub fn start() -> std::io::Result<Arc<Durability>> {
        let shared = Arc::new(Shared {
            wal: Mutex::new((None, None)),
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            started: AtomicU64::new(0),
            others_checkpoint: AtomicU64::new(0),
            followed: AtomicU64::new(0),
            #[cfg(test)]
            fail_next: Mutex::new(None),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("pb-sqlite-sync".into())
            .spawn(move || s.run())?;
        Ok(Arc::new(Durability { shared }))
    }

    /// The database file as SQLite resolved it (`sqlite3_db_filename`: absolute, links
    /// followed); its WAL is that name with `-wal`, as SQLite names it.
    pub(crate) fn set_wal(&self, db_file: &str) {
        let mut wal = self.shared.wal.lock().unwrap_or_else(|p| p.into_inner());
        *wal = (Some(PathBuf::from(format!("{db_file}-wal"))), None);
    }

    /// A statement that may commit is about to run; the count ends when the returned
    /// guard drops (after the statement, or if it panicked).
    pub(crate) fn begin_commit(&self) -> Counting<'_> {
        self.shared.started.fetch_add(1, Ordering::SeqCst);
        Counting(self)
    }

    /// Another connection checkpoints this WAL until the returned guard drops (also if
    /// the checkpointing future is dropped midway, so commits never stay on the disk
    /// thread for a checkpoint that ended).
    pub(crate) fn another_checkpoints(&self) -> AnotherCheckpoint<'_> {
        self.shared.others_checkpoint.fetch_add(1, Ordering::SeqCst);
        AnotherCheckpoint(self)
    }

    /// Which of the other connections' checkpoints a commit beginning now follows.
    pub(crate) fn others_checkpoint(&self) -> u64 {
        self.shared.others_checkpoint.load(Ordering::SeqCst)
    }

    /// Whether a commit now may be the first after another connection's checkpoint
    /// (one runs, or one ended and no commit has begun since): it may start the WAL
    /// over.
    pub(crate) fn after_others_checkpoint(&self) -> bool {
        let now = self.shared.others_checkpoint.load(Ordering::SeqCst);
        !now.is_multiple_of(2) || self.shared.followed.load(Ordering::SeqCst) != now
    }

    /// A commit that began at `seen` (an [`Durability::others_checkpoint`], none
    /// running) has run: the commits after it are not the first after that
    /// checkpoint.
    pub(crate) fn commit_followed(&self, seen: u64) {
        if seen.is_multiple_of(2) {
            self.shared.followed.fetch_max(seen, Ordering::SeqCst);
        }
    }

    /// An fsync failed: nothing is promised durable any more.
    pub fn failed(&self) -> bool {
        lock(&self.shared.state).failed.is_some()
    }

    /// That statement returned (committed or not): the next fsync covers it.
    fn end_commit(&self) {
        let mut st = lock(&self.shared.state);
        st.finished = self.shared.started.load(Ordering::SeqCst);
        drop(st);
        self.shared.work.notify_one();
    }

    /// The last commit a read made now could see.
    pub fn visible(&self) -> u64 {
        self.shared.started.load(Ordering::SeqCst)
    }

    /// Calls `tell` once commit `upto` (a `visible()`) and every one before it is
    /// durable, or cannot be: at once if it already is, else on the fsync thread.
    pub fn when_durable(&self, upto: u64, tell: impl FnOnce(Outcome) + Send + 'static) {
        let mut st = lock(&self.shared.state);
        if let Some(outcome) = st.known(upto) {
            drop(st);
            return tell(outcome);
        }
        // The fsync thread is woken by the commit's end (`end_commit`), not by waiters.
        st.waiters.push_back((upto, Box::new(tell)));
    }

    /// Returns once commit `upto` and every one before it is durable.
    pub async fn wait(&self, upto: u64) -> Outcome {
        if let Some(outcome) = lock(&self.shared.state).known(upto) {
            return outcome;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.when_durable(upto, move |r| {
            let _ = tx.send(r);
        });
        rx.await
            .unwrap_or_else(|_| Err(Arc::from("the WAL's fsync thread is gone")))
    }

    /// Makes every commit that has returned durable now, on the calling thread, and
    /// tells whoever waits for them: for a thread that may wait for the disk
    /// (`this_thread_may_wait_for_disk`), whose group then waits for no other thread
    /// to wake. The fsync thread is woken by the same commit all the same; whichever
    /// of the two takes the WAL second finds the commit durable and skips its fsync.
    /// No fsync is made after one failed (`paused` holds back the fsync thread only).
    pub(crate) fn sync_here(&self) {
        let upto = lock(&self.shared.state).finished;
        self.shared.sync_and_tell(upto);
    }

    /// Holds the fsyncs back (tests: what waits for them, and what does not).
    #[cfg(test)]
    pub(crate) fn pause(&self, paused: bool) {
        lock(&self.shared.state).paused = paused;
        self.shared.work.notify_one();
    }
}

/// A statement that may commit is running (`Durability::begin_commit`).
pub(crate) struct Counting<'a>(&'a Durability);

impl Drop for Counting<'_> {
    fn drop(&mut self) {
        self.0.end_commit();
    }
}

/// Another connection checkpoints the WAL (`Durability::another_checkpoints`).
pub(crate) struct AnotherCheckpoint<'a>(&'a Durability);

impl Drop for AnotherCheckpoint<'_> {
    fn drop(&mut self) {
        self.0
            .shared
            .others_checkpoint
            .fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Durability {
    /// The thread makes what is left durable, tells who waits, and ends.
    fn drop(&mut self) {
        lock(&self.shared.state).closed = true;
        self.shared.work.notify_one();
    }
}

impl Shared {
    fn run(&self) {
        let mut st = lock(&self.state);
        loop {
            // Closing, the last commits are synced even if a test paused the thread.
            // After a failed fsync nothing is due: every waiter is failed at once.
            let due = st.finished > st.synced && st.failed.is_none() && (!st.paused || st.closed);
            if !due {
                if st.closed && (st.finished == st.synced || st.failed.is_some()) {
                    break;
                }
                st = self.work.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            let upto = st.finished;
            drop(st);
            self.sync_and_tell(upto);
            st = lock(&self.state);
        }
        // Closed: whoever still waits is told (their commits were synced, or the
        // connection's close made them durable).
        let told = take_due(&mut st);
        let rest: Vec<_> = st.waiters.drain(..).collect();
        drop(st);
        for (outcome, tell) in told {
            tell(outcome);
        }
        for (_, tell) in rest {
            tell(Ok(()));
        }
    }
}

/// The waiters whose commit is now durable (all of them if an fsync failed).
fn take_due(st: &mut State) -> Vec<(Outcome, Waiter)> {
    // Waiters arrive in about the order of their commits, not exactly (a reader's
    // watermark may be older than a group's): keep the ones still ahead.
    let mut out = Vec::new();
    let mut ahead = VecDeque::new();
    for (upto, tell) in std::mem::take(&mut st.waiters) {
        match st.known(upto) {
            Some(outcome) => out.push((outcome, tell)),
            None => ahead.push_back((upto, tell)),
        }
    }
    st.waiters = ahead;
    out
}

impl Shared {
    /// Makes commit `upto` (one that has returned) and every one before it durable,
    /// then tells whoever waits for what now is.
    ///
    /// Fsyncs of the WAL are taken one at a time (the `wal` lock), and each one's
    /// outcome is recorded before the next may begin: after a failed fsync the kernel
    /// reports the lost pages to one fsync only, so another thread's fsync right after
    /// it would succeed and must not be taken as making those commits durable. An fsync
    /// that another thread finished meanwhile, covering `upto`, is not repeated.
    fn sync_and_tell(&self, upto: u64) {
        {
            let mut wal = self.wal.lock().unwrap_or_else(|p| p.into_inner());
            let due = {
                let st = lock(&self.state);
                st.failed.is_none() && st.synced < upto
            };
            if due {
                let synced = fsync(&mut wal);
                #[cfg(test)]
                let synced = self.injected(synced);
                let mut st = lock(&self.state);
                match synced {
                    Ok(()) => st.synced = st.synced.max(upto),
                    Err(e) => {
                        tracing::error!(error = %e,
                            "fsync of the SQLite WAL failed: no commit can be promised durable from now on");
                        st.failed = Some(Arc::from(format!("fsync of the WAL failed: {e}")));
                    }
                }
            }
        }
        let told = take_due(&mut lock(&self.state));
        for (outcome, tell) in told {
            tell(outcome);
        }
    }
}

#[cfg(test)]
impl Shared {
    /// An fsync's outcome, or the failure a test asked for (`fail_next`).
    fn injected(&self, synced: std::io::Result<()>) -> std::io::Result<()> {
        let wait = self.fail_next.lock().unwrap().take();
        match wait {
            Some(wait) => {
                std::thread::sleep(wait);
                Err(std::io::Error::other("an fsync failure, injected"))
            }
            None => synced,
        }
    }
}

/// Flushes the WAL file to the disk. SQLite writes it through its own descriptor; an
/// fsync of any descriptor of the file flushes the file. The WAL exists while the
/// writer's connection is open (SQLite removes it only when the last connection
/// closes), so a missing one is an error, as is a WAL never named.
fn fsync(wal: &mut (Option<PathBuf>, Option<std::fs::File>)) -> std::io::Result<()> {
    let (path, file) = wal;
    if file.is_none() {
        let path = path
            .as_ref()
            .ok_or_else(|| std::io::Error::other("the WAL file was never named"))?;
        *file = Some(std::fs::File::open(path)?);
    }
    file.as_ref().map_or(Ok(()), |f| f.sync_data())
}

/// Durabilities handed from `Db::connect` to the writer's connection it opens (by an id
/// in the connection's URL, `?pb_durability=N`): the connection counts its commits in
/// it, and the writer waits on it.
static HANDOFF: OnceLock<Mutex<std::collections::HashMap<u64, Arc<Durability>>>> = OnceLock::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn handoff() -> MutexGuard<'static, std::collections::HashMap<u64, Arc<Durability>>> {
    HANDOFF
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Leaves `d` for the connection that opens with the id returned.
pub(crate) fn hand_over(d: Arc<Durability>) -> u64 {
    let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
    handoff().insert(id, d);
    id
}

/// Takes what `hand_over` left under `id` (once).
pub(crate) fn take(id: u64) -> Option<Arc<Durability>> {
    handoff().remove(&id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn started(dir: &tempfile::TempDir) -> Arc<Durability> {
        let db = dir.path().join("d.db");
        std::fs::write(dir.path().join("d.db-wal"), b"frames").unwrap();
        let d = Durability::start().unwrap();
        d.set_wal(db.to_str().unwrap());
        d
    }

    fn commit(d: &Durability) {
        drop(d.begin_commit());
    }

    /// A started durability whose fsync thread is held back.
    fn paused(dir: &tempfile::TempDir) -> Arc<Durability> {
        let d = started(dir);
        d.pause(true);
        d
    }

    /// What waiters were told: each waiter's number, and whether it was told durable.
    #[derive(Clone, Default)]
    struct Told(Arc<Mutex<Vec<(u64, bool)>>>);

    impl Told {
        /// A waiter for commit `upto` that notes its outcome as `n`.
        fn wait_for(&self, d: &Durability, upto: u64, n: u64) {
            let told = self.0.clone();
            d.when_durable(upto, move |r| told.lock().unwrap().push((n, r.is_ok())));
        }

        /// A commit, and a waiter for it numbered `n`.
        fn commit(&self, d: &Durability, n: u64) {
            commit(d);
            self.wait_for(d, d.visible(), n);
        }

        /// What was told so far, in order of the waiters' numbers.
        fn sorted(&self) -> Vec<(u64, bool)> {
            let mut got = self.0.lock().unwrap().clone();
            got.sort();
            got
        }
    }

    #[tokio::test]
    async fn a_commit_is_durable_only_after_an_fsync_that_began_after_it_returned() {
        let dir = tempfile::tempdir().unwrap();
        let d = paused(&dir);
        let running = d.begin_commit();
        let upto = d.visible();
        assert_eq!(upto, 1);
        // Still running: a reader that saw it waits, even for an fsync that is due.
        let waiting = tokio::spawn({
            let d = d.clone();
            async move { d.wait(upto).await }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiting.is_finished());
        drop(running);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiting.is_finished(), "no fsync may run while paused");
        d.pause(false);
        let r = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert!(matches!(r, Ok(Ok(Ok(())))), "{r:?}");
        // Nothing since: no wait.
        assert!(d.wait(d.visible()).now_or_never_ok());
    }

    #[tokio::test]
    async fn one_fsync_covers_every_commit_before_it_and_tells_each_waiter_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = paused(&dir);
        let told = Told::default();
        for n in 1..=3u64 {
            told.commit(&d, n);
        }
        // A reader's watermark older than the last commit.
        told.wait_for(&d, 2, 20);
        assert!(told.sorted().is_empty());
        d.pause(false);
        for _ in 0..500 {
            if told.sorted().len() == 4 {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(
            told.sorted(),
            vec![(1, true), (2, true), (3, true), (20, true)]
        );
    }

    #[tokio::test]
    async fn a_failed_fsync_fails_every_waiter_then_and_after() {
        let dir = tempfile::tempdir().unwrap();
        // No WAL where it is named (its open fails, as an fsync would).
        let d = Durability::start().unwrap();
        d.set_wal(dir.path().join("gone.db").to_str().unwrap());
        commit(&d);
        let r = tokio::time::timeout(Duration::from_secs(5), d.wait(d.visible())).await;
        assert!(matches!(r, Ok(Err(_))), "{r:?}");
        assert!(d.failed());
        assert!(
            d.wait(0).await.is_err(),
            "nothing is promised after a failed fsync"
        );
        // The thread does not try again and again: later commits fail at once.
        commit(&d);
        let r = tokio::time::timeout(Duration::from_secs(5), d.wait(d.visible())).await;
        assert!(matches!(r, Ok(Err(_))), "{r:?}");
    }

    #[tokio::test]
    async fn dropping_it_tells_whoever_waits_and_ends_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let d = paused(&dir);
        commit(&d);
        let (tx, rx) = tokio::sync::oneshot::channel();
        d.when_durable(d.visible(), move |r| {
            let _ = tx.send(r);
        });
        drop(d);
        let r = tokio::time::timeout(Duration::from_secs(5), rx).await;
        assert!(matches!(r, Ok(Ok(Ok(())))), "{r:?}");
    }

    /// A thread that may wait for the disk syncs what has committed itself, and tells
    /// every waiter whose commit that covers, while the fsync thread is held back.
    #[tokio::test]
    async fn sync_here_makes_what_returned_durable_without_the_fsync_thread() {
        let dir = tempfile::tempdir().unwrap();
        let d = paused(&dir);
        let told = Told::default();
        for n in 1..=2u64 {
            told.commit(&d, n);
        }
        let running = d.begin_commit();
        told.wait_for(&d, d.visible(), 3);
        std::thread::sleep(Duration::from_millis(30));
        assert!(told.sorted().is_empty(), "the fsync thread is held back");
        d.sync_here();
        assert_eq!(told.sorted(), vec![(1, true), (2, true)]);
        // A commit still running when the fsync began is not covered by it.
        drop(running);
        d.sync_here();
        assert_eq!(told.sorted(), vec![(1, true), (2, true), (3, true)]);
    }

    /// A failed fsync is recorded before another thread may fsync: after a failure the
    /// kernel reports the lost pages to one fsync only, so a `sync_here` that ran right
    /// after it would succeed, and must not promise those commits durable.
    #[tokio::test]
    async fn a_failed_fsync_is_recorded_before_another_thread_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let d = paused(&dir);
        let told = Told::default();
        told.commit(&d, 1);
        // The fsync thread's next fsync fails, and it takes 200 ms to say so.
        *d.shared.fail_next.lock().unwrap() = Some(Duration::from_millis(200));
        d.pause(false);
        std::thread::sleep(Duration::from_millis(50));
        told.commit(&d, 2);
        d.sync_here();
        assert_eq!(told.sorted(), vec![(1, false), (2, false)]);
        assert!(d.failed());
    }

    trait NowOrNever {
        fn now_or_never_ok(self) -> bool;
    }

    impl<F: std::future::Future<Output = Outcome>> NowOrNever for F {
        fn now_or_never_ok(self) -> bool {
            matches!(futures::FutureExt::now_or_never(self), Some(Ok(())))
        }
    }
}
