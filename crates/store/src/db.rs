//! Connecting, migrating, and the few places where SQLite and PostgreSQL differ.
//!
//! Both backends run the same SQL through sqlx's `Any` driver; `$1` placeholders work
//! on both. Types are kept to what both agree on: BIGINT for numbers and flags, TEXT
//! for strings and JSON, so every row decodes the same way on either database.
//!
//! SQLite gets one writer connection (every write transaction is serialized there, so
//! no transaction ever meets SQLITE_BUSY half-way) and a pool of readers; WAL lets the
//! readers run beside the writer. Every caller is answered only once its commit is
//! durable, which is what an acknowledged webhook promises. The writer commits its
//! callers' transactions in groups, one fsync for many (`group.rs`), runs their
//! statements on the caller's thread (`inline/`, which the readers use too), and
//! applies the next group while the last one's fsync is in flight (`inline/durable.rs`;
//! readers then see a commit up to one fsync early, and `read.rs` keeps that from
//! leaving the process). `temp_store=MEMORY` keeps the statement journal (the undo of
//! a statement that fails half-way, such as a multi-row insert) in memory rather than
//! in a temporary file: it was 15 % of the writer's time, in `pwrite`, under webhook
//! load.

use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{AnyPool, Connection, Executor};

use crate::group::{self, GroupCommits, Writer};
use crate::StoreError;

pub type Conn = sqlx::AnyConnection;

/// A write transaction. Repository functions take `&mut Conn` (a transaction derefs
/// to one) or any executor, so one change can span several of them atomically.
///
/// On SQLite it is a member of the writer's current group (`group.rs`): `commit`
/// returns once its group has committed, so its work is durable. Dropped without
/// `commit`, its work is undone, on either database.
pub struct Tx(TxInner);

enum TxInner {
    Pg(sqlx::Transaction<'static, sqlx::Any>),
    /// `Db::autocommit` on PostgreSQL: each statement commits on its own.
    PgAuto(PoolConnection<sqlx::Any>),
    Sqlite(group::Member),
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self.0 {
            TxInner::Pg(t) => t.commit().await,
            TxInner::PgAuto(_) => Ok(()),
            TxInner::Sqlite(m) => m.commit().await,
        }
    }

    /// Commits, and returns once the commit is made, when every later transaction and
    /// reader sees it: on SQLite with commit pipelining maybe before it is durable
    /// (`commit` waits for that too). For a step a request takes on its way, not its
    /// last: what the request then passes on waits until this is durable, as for a
    /// read (`answer_durably`, and the fence before every call to Stripe). Outside a
    /// request, call `Db::durable` before passing anything on.
    pub async fn commit_visible(self) -> Result<(), sqlx::Error> {
        match self.0 {
            TxInner::Pg(t) => t.commit().await,
            TxInner::PgAuto(_) => Ok(()),
            TxInner::Sqlite(m) => m.commit_visible().await,
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.0 {
            TxInner::Pg(t) => t.rollback().await,
            TxInner::PgAuto(_) => Ok(()),
            TxInner::Sqlite(m) => m.rollback().await,
        }
    }
}

impl Deref for Tx {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        match &self.0 {
            TxInner::Pg(t) => t,
            TxInner::PgAuto(c) => c,
            TxInner::Sqlite(m) => m,
        }
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Conn {
        match &mut self.0 {
            TxInner::Pg(t) => t,
            TxInner::PgAuto(c) => c,
            TxInner::Sqlite(m) => m,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Db {
    /// Where writes go.
    write: Write,
    /// Where plain reads go. On PostgreSQL the same pool as writes.
    pub(crate) read: AnyPool,
    /// SQLite: the file, for sqlx's own driver, on which migrations run (ours, which
    /// the writer and the readers use, offers no `Migrate`).
    migrate_on: Option<AnyConnectOptions>,
    pub backend: Backend,
    /// Made by `with_own_connection`: `close` closes only its own write pool, not
    /// what it shares with the `Db` it was made from (which closes that).
    borrowed: bool,
}

#[derive(Clone)]
enum Write {
    Pool(AnyPool),
    /// SQLite: the one writer connection, with group commit.
    Group(Arc<Writer>),
}

pub(crate) static MIGRATE_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static MIGRATE_POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone)]
pub struct DbOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// SQLite: a group of transactions commits once it is this old, or holds
    /// `group_max_members`, even while more callers wait for the writer (`group.rs`).
    pub group_max_age: Duration,
    pub group_max_members: u64,
    /// SQLite: commit pipelining. The writer's `COMMIT` writes the WAL without an
    /// fsync, a thread of its own syncs it, and the writer applies the next group
    /// meanwhile; every caller is still answered only once its work is durable
    /// (`inline/durable.rs`). Off: SQLite fsyncs inside each `COMMIT`.
    pub commit_pipelining: bool,
    /// PostgreSQL: a pooled connection idle at least this long is pinged before it is
    /// handed out (`postgres_pool`).
    pub ping_after_idle: Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
            group_max_age: group::MAX_AGE,
            group_max_members: group::MAX_MEMBERS,
            commit_pipelining: true,
            ping_after_idle: Duration::from_secs(30),
        }
    }
}

/// Normalises what an operator may type: `sqlite://file.db`, `sqlite:file.db`,
/// `postgres://…`, `postgresql://…`. SQLite files are created if missing.
pub fn normalize_url(url: &str) -> Result<(Backend, String), StoreError> {
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if rest.is_empty() {
            return Err(StoreError::Config("the SQLite URL names no file".into()));
        }
        let with_mode = if rest.contains("mode=") {
            format!("sqlite://{rest}")
        } else if rest.contains('?') {
            format!("sqlite://{rest}&mode=rwc")
        } else {
            format!("sqlite://{rest}?mode=rwc")
        };
        return Ok((Backend::Sqlite, with_mode));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_owned()));
    }
    Err(StoreError::Config(format!(
        "unsupported database URL `{}`: use sqlite://<file> or postgres://…",
        url.split('@').next_back().unwrap_or("")
    )))
}

/// The SQLite file a URL points at, if it is one (for the key file made beside it).
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

impl Db {
    pub async fn connect(url: &str, opts: DbOptions) -> Result<Db, StoreError> {
        crate::install_drivers();
        let (backend, url) = normalize_url(url)?;
        if backend == Backend::Sqlite && sqlite_path(&url).is_none() {
            return Err(StoreError::Config(
                "SQLite needs a file: an in-memory database would be a different, empty one \
                 on each of the writer's and the readers' connections"
                    .into(),
            ));
        }
        let connect = AnyConnectOptions::from_str(&url).map_err(StoreError::from)?;
        match backend {
            Backend::Sqlite => {
                // The file is made (and switched to WAL) by sqlx's driver, as before;
                // then the writer opens it with its own (`inline/`).
                let mut first = sqlx::AnyConnection::connect_with(&connect).await?;
                first.execute("PRAGMA journal_mode=WAL").await?;
                let durability = opts
                    .commit_pipelining
                    .then(crate::inline::Durability::start)
                    .transpose()
                    .map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
                let handed = durability.clone().map(crate::inline::durable::hand_over);
                let writer_url = crate::inline::InlineOptions::url_for(&url, handed);
                let conn = sqlx::AnyConnection::connect(&writer_url).await;
                if let Some(id) = handed {
                    // Taken by the connection, unless it failed to open.
                    crate::inline::durable::take(id);
                }
                let mut conn = conn?;
                conn.execute(SQLITE_PRAGMAS).await?;
                if durability.is_some() {
                    conn.execute("PRAGMA synchronous=NORMAL").await?;
                }
                let writer = Arc::new(Writer::new(conn, &opts, durability));
                // The readers run on our driver too: a read then runs on the caller's
                // thread, not on a thread of the connection's behind a channel.
                let readers =
                    AnyConnectOptions::from_str(&crate::inline::InlineOptions::url_for(&url, None))
                        .map_err(StoreError::from)?;
                let read = sqlite_pool(opts.max_connections.clamp(1, 8), &opts)
                    .connect_with(readers)
                    .await?;
                let _ = first.close().await;
                tokio::spawn(crate::checkpoint::in_background(
                    read.clone(),
                    Arc::downgrade(&writer),
                ));
                Ok(Db {
                    write: Write::Group(writer),
                    read,
                    migrate_on: Some(connect),
                    backend,
                    borrowed: false,
                })
            }
            Backend::Postgres => {
                let pool = postgres_pool(&opts).connect_with(connect).await?;
                Ok(Db {
                    write: Write::Pool(pool.clone()),
                    read: pool,
                    migrate_on: None,
                    backend,
                    borrowed: false,
                })
            }
        }
    }

    /// Applies the migrations that are not yet applied. On PostgreSQL sqlx holds an
    /// advisory lock meanwhile, so two nodes starting together do not race.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.write {
            Write::Pool(pool) => MIGRATE_POSTGRES.run(pool).await?,
            Write::Group(w) => {
                // Our driver runs no migrations: they run on a connection of sqlx's own
                // while the writer is held, with no group open.
                let _held = w.exclusive().await?;
                let opts = self
                    .migrate_on
                    .as_ref()
                    .ok_or_else(|| StoreError::Config("SQLite without a file to migrate".into()))?;
                let mut conn = sqlx::AnyConnection::connect_with(opts).await?;
                conn.execute(SQLITE_PRAGMAS).await?;
                let migrated = MIGRATE_SQLITE.run(&mut conn).await;
                let _ = conn.close().await;
                migrated?;
            }
        }
        Ok(())
    }

    /// A `Db` for a writer on a runtime of its own (a webhook lane): on PostgreSQL its
    /// writes go through a pool of one connection of its own, opened when first used
    /// on the runtime that uses it, with the shared pool's settings and session setup
    /// (`POSTGRES_SESSION`); reads stay on the shared pool. A connection's socket wakes
    /// the runtime it was opened on, so a writer that borrowed the shared pool's was
    /// woken through the server's runtime, behind its HTTP tasks, at every round trip
    /// (BENCHMARKS.md); and the writer no longer waits for a pooled connection that API
    /// requests hold. Call it on the runtime that will use it. The connection shows in
    /// `pg_stat_activity` as `application_name` `name`. On SQLite the one writer is
    /// already shared by all: this `Db`.
    pub fn with_own_connection(&self, name: &str) -> Db {
        match &self.write {
            Write::Pool(pool) => {
                // Named in the URL, which sqlx's PostgreSQL driver reads (after any
                // `application_name` of the operator's, so this one stands).
                let mut connect = (*pool.connect_options()).clone();
                connect
                    .database_url
                    .query_pairs_mut()
                    .append_pair("application_name", name);
                let own = pool
                    .options()
                    .clone()
                    .max_connections(1)
                    .min_connections(0)
                    .connect_lazy_with(connect);
                Db {
                    write: Write::Pool(own),
                    read: self.read.clone(),
                    migrate_on: None,
                    backend: self.backend,
                    borrowed: true,
                }
            }
            Write::Group(_) => Db {
                borrowed: true,
                ..self.clone()
            },
        }
    }

    /// Starts a write transaction (on SQLite, a member of the one writer's group).
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(Tx(match &self.write {
            Write::Pool(pool) => TxInner::Pg(pool.begin().await?),
            Write::Group(w) => TxInner::Sqlite(member(w).await?),
        }))
    }

    /// A connection for writes outside a transaction of the caller's: on PostgreSQL a
    /// pooled connection in autocommit (each statement commits at once, `commit` does
    /// nothing), on SQLite a member of the writer's group as `begin` gives (its
    /// statements are durable at `commit`, together). Call `commit` on both.
    pub async fn autocommit(&self) -> Result<Tx, StoreError> {
        Ok(Tx(match &self.write {
            Write::Pool(pool) => TxInner::PgAuto(pool.acquire().await?),
            Write::Group(w) => TxInner::Sqlite(member(w).await?),
        }))
    }

    /// The pool for reads outside a transaction. What is read there is passed on only
    /// under `answer_durably` (or after `durable`): see `read.rs`.
    pub fn reader(&self) -> crate::Reader<'_> {
        let writer = match &self.write {
            Write::Group(w) => Some(&**w),
            Write::Pool(_) => None,
        };
        crate::Reader::new(&self.read, writer)
    }

    /// Returns once every commit a read made now could see is durable (at once on
    /// PostgreSQL, and on SQLite without commit pipelining).
    pub async fn durable(&self) -> Result<(), StoreError> {
        match &self.write {
            Write::Group(w) => Ok(w.durable(w.visible()).await?),
            Write::Pool(_) => Ok(()),
        }
    }

    /// The writer's `Durability` (tests hold its fsyncs back).
    #[cfg(test)]
    pub(crate) fn durability(&self) -> Option<Arc<crate::inline::Durability>> {
        match &self.write {
            Write::Group(w) => w.durability.clone(),
            Write::Pool(_) => None,
        }
    }

    /// Returns once commit `upto` (as `Reader` notes them) is durable.
    pub(crate) async fn durable_upto(&self, upto: u64) -> Result<(), StoreError> {
        match &self.write {
            Write::Group(w) => Ok(w.durable(upto).await?),
            Write::Pool(_) => Ok(()),
        }
    }

    /// On SQLite, how many group commits the writer has made and how many
    /// transactions they held; `None` on PostgreSQL.
    pub fn group_commits(&self) -> Option<GroupCommits> {
        match &self.write {
            Write::Group(w) => Some(w.counts()),
            Write::Pool(_) => None,
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// Closes the pools (for a `Db` made by `with_own_connection`, only its own).
    pub async fn close(&self) {
        match &self.write {
            Write::Pool(pool) => pool.close().await,
            Write::Group(_) if self.borrowed => {}
            Write::Group(w) => w.close().await,
        }
        if !self.borrowed {
            self.read.close().await;
        }
    }

    /// ` FOR UPDATE` where row locks exist; SQLite's single writer already serializes.
    pub fn for_update(&self) -> &'static str {
        for_update(self.backend)
    }
}

/// ` FOR UPDATE` on PostgreSQL, nothing on SQLite.
pub fn for_update(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE",
    }
}

/// The database behind a connection.
pub(crate) fn backend_of(conn: &Conn) -> Backend {
    if conn.backend_name() == "PostgreSQL" {
        Backend::Postgres
    } else {
        Backend::Sqlite
    }
}

/// ` FOR UPDATE` for the database behind `conn`.
pub(crate) fn lock_clause(conn: &Conn) -> &'static str {
    match backend_of(conn) {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    }
}

const SQLITE_PRAGMAS: &str =
    "PRAGMA busy_timeout=5000; PRAGMA foreign_keys=ON; PRAGMA synchronous=FULL; \
     PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit=67108864; \
     PRAGMA temp_store=MEMORY;";

/// PostgreSQL's pool. sqlx pings every connection before handing it out, by default:
/// one more round trip to the server per transaction and per read, ~300 µs each under
/// load on a busy machine (BENCHMARKS.md). Only a connection idle for
/// `ping_after_idle` (30 s) is pinged here, so one that a restarted or failed-over
/// server dropped while it sat idle is found and replaced before a caller gets it. One
/// used within that time fails its next caller's statement once (the transaction
/// rolls back, as on any database error) and is closed by sqlx when it comes back to
/// the pool, which pings every connection it takes back: after a restart under load,
/// up to one caller per pooled connection sees an error.
fn postgres_pool(opts: &DbOptions) -> AnyPoolOptions {
    let ping_after_idle = opts.ping_after_idle;
    AnyPoolOptions::new()
        .max_connections(opts.max_connections)
        .acquire_timeout(opts.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(move |conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= ping_after_idle {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(POSTGRES_SESSION).await?;
                Ok(())
            })
        })
}

/// Run once on each new PostgreSQL connection: `random_page_cost` 1.1 for this session,
/// unless the server, the database or the role has set it (then `source` is not
/// `default` and their value stands).
///
/// PostgreSQL's built-in 4.0 prices a page read through an index as four times a page
/// read in order, a figure for spinning disks. paybridge's tables are read by key and
/// stay in memory; with 4.0, a generic plan for a small table (a new shop's first
/// thousand payments) scanned the app's every payment twice to lock a webhook batch's
/// payments, instead of a few index probes (a `Seq Scan` and a hash join where an index
/// scan and a nested loop belong). 1.1 is the usual value for SSDs and for data in
/// memory. BENCHMARKS.md, "PostgreSQL: its own CPU counted, a floor on PostgreSQL, and
/// plans priced for memory".
const POSTGRES_SESSION: &str = "SELECT set_config('random_page_cost', '1.1', false) \
     FROM pg_settings WHERE name = 'random_page_cost' AND source = 'default'";

fn sqlite_pool(max: u32, opts: &DbOptions) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        .min_connections(1)
        .acquire_timeout(opts.acquire_timeout)
        // A connection to a local file does not go stale the way a network one can;
        // the ping sqlx would send before every acquire is one more round trip to the
        // connection's thread on the writer's path.
        .test_before_acquire(false)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(SQLITE_PRAGMAS).await?;
                Ok(())
            })
        })
}

/// A member of the writer's group. What it reads there it may pass on without
/// committing (an error path): noted for `answer_durably` like a reader's read. While it
/// holds the writer no other commit can happen, so what it can see is fixed now.
async fn member(w: &Arc<Writer>) -> Result<group::Member, sqlx::Error> {
    let m = w.begin().await?;
    crate::read::note(w);
    Ok(m)
}

/// Unix seconds, the unit of every `created` paybridge shows (as Stripe's).
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix milliseconds, for schedules and leases.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// SQLite's query plan of `sql` on a fresh, migrated in-memory database: the `detail`
/// of each step (tests assert which index a statement uses). Its parameters stay
/// unbound (NULL): the plan does not depend on their values.
#[cfg(test)]
pub(crate) async fn sqlite_plan(sql: &str) -> Vec<String> {
    crate::install_drivers();
    let mut conn = sqlx::AnyConnection::connect("sqlite::memory:")
        .await
        .expect("sqlite");
    MIGRATE_SQLITE.run(&mut conn).await.expect("migrate");
    sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
        .fetch_all(&mut conn)
        .await
        .expect("plan")
        .iter()
        .map(|r| sqlx::Row::get::<String, _>(r, 3))
        .collect()
}

/// Asserts that SQLite's plan for `sql` names every index of `uses` and none of
/// `avoids` (each a piece of a plan line, such as `payments_order` or `(app_id=?)`, the
/// search of an app's every row).
#[cfg(test)]
pub(crate) async fn assert_plan(sql: &str, uses: &[&str], avoids: &[&str]) {
    let details = sqlite_plan(sql).await;
    for index in uses {
        assert!(
            details.iter().any(|d| d.contains(index)),
            "{index}: {sql}: {details:?}"
        );
    }
    for scan in avoids {
        assert!(
            !details.iter().any(|d| d.contains(scan)),
            "not {scan}: {sql}: {details:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_normalise() {
        assert_eq!(
            normalize_url("sqlite://paybridge.db").unwrap(),
            (Backend::Sqlite, "sqlite://paybridge.db?mode=rwc".into())
        );
        assert_eq!(
            normalize_url("sqlite:x.db?cache=shared").unwrap().1,
            "sqlite://x.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            normalize_url("postgres://u@h/db").unwrap().0,
            Backend::Postgres
        );
        assert!(normalize_url("mysql://x").is_err());
        assert!(normalize_url("sqlite://").is_err());
        assert_eq!(
            sqlite_path("sqlite://data/p.db?mode=rwc"),
            Some("data/p.db".into())
        );
        assert_eq!(sqlite_path("postgres://x"), None);
    }

    /// An in-memory SQLite database is refused with a clear error: each connection
    /// would open a database of its own.
    #[tokio::test]
    async fn in_memory_sqlite_is_refused() {
        for url in ["sqlite::memory:", "sqlite://:memory:"] {
            match Db::connect(url, DbOptions::default()).await {
                Err(StoreError::Config(why)) => assert!(why.contains("needs a file"), "{why}"),
                Err(e) => panic!("{url}: {e}"),
                Ok(_) => panic!("{url}: connected"),
            }
        }
    }
}
