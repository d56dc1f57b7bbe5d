//! The floor receiver: the least a webhook receiver with paybridge's promise can do,
//! run as a process of its own (`paybridge-bench floor-serve`, started by the
//! `webhooks` benchmark) so that its CPU is measured apart from the load generator.
//!
//! It verifies the `Stripe-Signature` (the same function paybridge uses), reads the
//! event's id, and stores the raw event alone in one table, once per id, with naive
//! group commit: one writer thread with one SQLite connection (`synchronous=FULL`,
//! WAL) takes every event that has queued, inserts each with one prepared statement,
//! commits, and only then answers each request.
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

/// Runs the floor receiver on `127.0.0.1:0`, printing `listening on http://…`.
pub async fn serve(db: &str, secret: &str) -> anyhow::Result<()> {
    let (queue, rx) = std_mpsc::sync_channel::<Job>(MAX_BATCH * 8);
    let conn = sqlite::Db::open(db)?;
    conn.exec(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
         CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, received INTEGER NOT NULL, body BLOB NOT NULL) WITHOUT ROWID;",
    )?;
    std::thread::Builder::new()
        .name("floor-writer".into())
        .spawn(move || writer(conn, rx))?;
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
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let stored = store(&conn, &insert, &batch, now);
        if let Err(e) = &stored {
            eprintln!("floor: a batch failed: {e}");
            let _ = conn.exec("ROLLBACK");
        }
        for j in batch {
            let _ = j.done.send(stored.is_ok());
        }
    }
}

fn store(conn: &sqlite::Db, insert: &sqlite::Stmt, batch: &[Job], now: i64) -> anyhow::Result<()> {
    conn.exec("BEGIN")?;
    for j in batch {
        insert.run(j.id.as_bytes(), now, &j.raw)?;
    }
    conn.exec("COMMIT")
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
