//! The floor receiver: the least a webhook receiver with paybridge's promise can do,
//! run as a process of its own (`paybridge-bench floor-serve`, started by the
//! `webhooks` benchmark) so that its CPU is measured apart from the load generator.
//!
//! It verifies the `Stripe-Signature` (the same function paybridge uses), reads the
//! event's id, and stores the raw event alone in one table, once per id, with naive
//! group commit: one writer thread takes every event that has queued, stores the lot
//! in one transaction, commits, and only then answers each request. On SQLite
//! (`--db` a file) the thread has one connection (`synchronous=FULL`, WAL) and inserts
//! each event with one prepared statement. On PostgreSQL (`--db postgres://…`, run by
//! `webhooks --backend postgres`) it has one connection (sqlx's, with paybridge's
//! defaults: TLS if the server offers it, `synchronous_commit` on) and stores a batch
//! with one statement, an `INSERT … SELECT FROM unnest(…)` of typed arrays: one round
//! trip and one commit per batch, the least a group-committing PostgreSQL writer can do.
//!
//! SQLite is called through `libsqlite3-sys` (the library sqlx links), not `rusqlite`:
//! `rusqlite` turns on a default feature of `libsqlite3-sys`, and a feature that only
//! some packages of the workspace ask for makes cargo rebuild SQLite and the whole
//! sqlx stack whenever a build switches between those packages and the others. No payments, no state
//! machine, no outbox: paybridge does strictly more per event, so paybridge / floor
//! says how close its writer is to what this machine's disk and CPU allow.

use std::sync::mpsc as std_mpsc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use paybridge_core::stripe::signature;
use serde::Deserialize;
use tokio::sync::oneshot;

struct Job {
    id: String,
    raw: Bytes,
    done: oneshot::Sender<bool>,
}

#[derive(Clone)]
struct Floor {
    secret: std::sync::Arc<Vec<u8>>,
    queue: std_mpsc::SyncSender<Job>,
}

#[derive(Deserialize)]
struct EventId<'a> {
    #[serde(borrow)]
    id: &'a str,
}

const MAX_BATCH: usize = 512;

/// Runs the floor receiver on `127.0.0.1:0`, printing `listening on http://…`; `db` is
/// a SQLite file or a PostgreSQL URL.
pub async fn serve(db: &str, secret: &str) -> anyhow::Result<()> {
    let (queue, rx) = std_mpsc::sync_channel::<Job>(MAX_BATCH * 8);
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        let (ready, started) = std_mpsc::channel();
        let url = db.to_owned();
        std::thread::Builder::new()
            .name("floor-writer".into())
            .spawn(move || pg::writer(&url, rx, ready))?;
        started.recv()??;
    } else {
        let conn = sqlite::Db::open(db)?;
        conn.exec(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
             CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, received INTEGER NOT NULL, body BLOB NOT NULL) WITHOUT ROWID;",
        )?;
        std::thread::Builder::new()
            .name("floor-writer".into())
            .spawn(move || writer(conn, rx))?;
    }
    let floor = Floor {
        secret: std::sync::Arc::new(secret.as_bytes().to_vec()),
        queue,
    };
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(floor);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn receive(
    State(f): State<Floor>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let Some(header) = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return (StatusCode::BAD_REQUEST, "{\"error\":\"signature_missing\"}");
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if signature::verify(header, &body, &[f.secret.as_slice()], now).is_err() {
        return (StatusCode::BAD_REQUEST, "{\"error\":\"signature_invalid\"}");
    }
    let Ok(ev) = serde_json::from_slice::<EventId>(&body) else {
        return (StatusCode::BAD_REQUEST, "{\"error\":\"event_invalid\"}");
    };
    let id = ev.id.to_owned();
    let (done, answer) = oneshot::channel();
    let queue = f.queue.clone();
    let job = Job {
        id,
        raw: body,
        done,
    };
    // The queue is bounded: a full one blocks this task's thread briefly, which is the
    // back-pressure a naive receiver has.
    if tokio::task::block_in_place(|| queue.send(job)).is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "{\"error\":\"stopped\"}");
    }
    match answer.await {
        Ok(true) => (StatusCode::OK, "{\"received\":true}"),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"error\":\"not_stored\"}",
        ),
    }
}

fn writer(conn: sqlite::Db, rx: std_mpsc::Receiver<Job>) {
    let insert = match conn.prepare(
        "INSERT INTO events (id, received, body) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO NOTHING",
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("floor: {e}");
            return;
        }
    };
    while let Some(batch) = next_batch(&rx) {
        let stored = store(&conn, &insert, &batch, unix_now());
        if let Err(e) = &stored {
            eprintln!("floor: a batch failed: {e}");
            let _ = conn.exec("ROLLBACK");
        }
        answer(batch, stored.is_ok());
    }
}

/// Waits for one event, then takes all that has queued (at most MAX_BATCH); `None`
/// once the queue is closed.
fn next_batch(rx: &std_mpsc::Receiver<Job>) -> Option<Vec<Job>> {
    let mut batch = vec![rx.recv().ok()?];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(j) => batch.push(j),
            Err(_) => break,
        }
    }
    Some(batch)
}

fn answer(batch: Vec<Job>, stored: bool) {
    for j in batch {
        let _ = j.done.send(stored);
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn store(conn: &sqlite::Db, insert: &sqlite::Stmt, batch: &[Job], now: i64) -> anyhow::Result<()> {
    conn.exec("BEGIN")?;
    for j in batch {
        insert.run(j.id.as_bytes(), now, &j.raw)?;
    }
    conn.exec("COMMIT")
}

/// The floor's writer on PostgreSQL.
mod pg {
    use std::sync::mpsc as std_mpsc;

    use sqlx::{Connection, PgConnection};

    use super::{answer, next_batch, unix_now, Job};

    /// Connects (saying so on `ready`), then stores batches until the queue closes. The
    /// thread has a runtime of its own, as paybridge's SQLite ingest lane has: waiting
    /// for the queue blocks nothing else.
    pub fn writer(
        url: &str,
        rx: std_mpsc::Receiver<Job>,
        ready: std_mpsc::Sender<anyhow::Result<()>>,
    ) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready.send(Err(e.into()));
                return;
            }
        };
        rt.block_on(async move {
            let mut conn = match connect(url).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            let _ = ready.send(Ok(()));
            while let Some(batch) = next_batch(&rx) {
                let stored = store(&mut conn, &batch, unix_now()).await;
                if let Err(e) = &stored {
                    eprintln!("floor: a batch failed: {e}");
                }
                answer(batch, stored.is_ok());
            }
        });
    }

    async fn connect(url: &str) -> anyhow::Result<PgConnection> {
        let mut conn = PgConnection::connect(url).await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS events \
             (id text PRIMARY KEY, received bigint NOT NULL, body bytea NOT NULL)",
        )
        .execute(&mut conn)
        .await?;
        Ok(conn)
    }

    /// One statement, so one implicit transaction: durable when it returns.
    async fn store(conn: &mut PgConnection, batch: &[Job], now: i64) -> anyhow::Result<()> {
        let ids: Vec<&str> = batch.iter().map(|j| j.id.as_str()).collect();
        let bodies: Vec<&[u8]> = batch.iter().map(|j| &j.raw[..]).collect();
        sqlx::query(
            "INSERT INTO events (id, received, body) \
             SELECT i, $2, b FROM unnest($1::text[], $3::bytea[]) AS t(i, b) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(ids)
        .bind(now)
        .bind(bodies)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// The few SQLite calls the floor needs.
mod sqlite {
    use std::ffi::{c_int, CStr, CString};
    use std::ptr;

    use libsqlite3_sys as ffi;

    pub struct Db(*mut ffi::sqlite3);
    // SAFETY: the connection is opened in serialized mode (SQLITE_OPEN_FULLMUTEX) and
    // used by one thread at a time (moved to the writer thread).
    unsafe impl Send for Db {}

    pub struct Stmt<'a> {
        raw: *mut ffi::sqlite3_stmt,
        db: &'a Db,
    }

    impl Db {
        pub fn open(path: &str) -> anyhow::Result<Db> {
            let c = CString::new(path)?;
            let mut db = ptr::null_mut();
            let flags =
                ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE | ffi::SQLITE_OPEN_FULLMUTEX;
            // SAFETY: valid C string and out pointer.
            let rc = unsafe { ffi::sqlite3_open_v2(c.as_ptr(), &mut db, flags, ptr::null()) };
            let db = Db(db);
            db.check(rc)?;
            Ok(db)
        }

        fn check(&self, rc: c_int) -> anyhow::Result<()> {
            if rc == ffi::SQLITE_OK || rc == ffi::SQLITE_DONE || rc == ffi::SQLITE_ROW {
                return Ok(());
            }
            // SAFETY: sqlite3_errmsg returns a valid string for a handle (or a static one).
            let msg = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.0)) };
            anyhow::bail!("sqlite error {rc}: {}", msg.to_string_lossy())
        }

        pub fn exec(&self, sql: &str) -> anyhow::Result<()> {
            let c = CString::new(sql)?;
            // SAFETY: valid handle and C string; no callback.
            let rc = unsafe {
                ffi::sqlite3_exec(self.0, c.as_ptr(), None, ptr::null_mut(), ptr::null_mut())
            };
            self.check(rc)
        }

        pub fn prepare(&self, sql: &str) -> anyhow::Result<Stmt<'_>> {
            let c = CString::new(sql)?;
            let mut raw = ptr::null_mut();
            // SAFETY: valid handle, C string (nul-terminated, so length -1) and out pointer.
            let rc = unsafe {
                ffi::sqlite3_prepare_v2(self.0, c.as_ptr(), -1, &mut raw, ptr::null_mut())
            };
            self.check(rc)?;
            Ok(Stmt { raw, db: self })
        }
    }

    impl Drop for Db {
        fn drop(&mut self) {
            // SAFETY: the handle came from sqlite3_open_v2; statements borrow it and
            // are gone by now.
            unsafe { ffi::sqlite3_close(self.0) };
        }
    }

    impl Stmt<'_> {
        /// Binds (text, integer, blob) to ?1..?3, runs the statement, resets it.
        pub fn run(&self, text: &[u8], int: i64, blob: &[u8]) -> anyhow::Result<()> {
            // SAFETY: valid statement; SQLITE_TRANSIENT makes SQLite copy the bytes,
            // so they need not outlive the call.
            unsafe {
                self.db.check(ffi::sqlite3_bind_text(
                    self.raw,
                    1,
                    text.as_ptr().cast(),
                    text.len() as c_int,
                    ffi::SQLITE_TRANSIENT(),
                ))?;
                self.db.check(ffi::sqlite3_bind_int64(self.raw, 2, int))?;
                self.db.check(ffi::sqlite3_bind_blob(
                    self.raw,
                    3,
                    blob.as_ptr().cast(),
                    blob.len() as c_int,
                    ffi::SQLITE_TRANSIENT(),
                ))?;
                let rc = ffi::sqlite3_step(self.raw);
                ffi::sqlite3_reset(self.raw);
                self.db.check(rc)
            }
        }
    }

    impl Drop for Stmt<'_> {
        fn drop(&mut self) {
            // SAFETY: the statement came from sqlite3_prepare_v2.
            unsafe { ffi::sqlite3_finalize(self.raw) };
        }
    }
}
