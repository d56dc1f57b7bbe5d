//! Throwaway databases for tests: a temporary SQLite file, or a fresh PostgreSQL
//! database dropped when the test ends; and `on_both!`, which runs a test on each.

use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each listed test once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await
                }
            )*
        }
    };
}

pub fn pg_admin_url() -> String {
    std::env::var("PAYBRIDGE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn random_suffix() -> String {
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(10)
        .map(|c| char::from(c).to_ascii_lowercase())
        .collect()
}

/// A database that exists for one test.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub dir: tempfile::TempDir,
    pg_name: Option<String>,
    /// The master key the servers of this test share.
    pub master_key: String,
}

impl TestDb {
    /// A fresh database. PostgreSQL must be reachable: with `CI=true` a missing server
    /// fails the test; elsewhere the PostgreSQL half of a test is skipped with a note.
    pub async fn new(backend: Backend) -> Option<TestDb> {
        use base64::Engine;
        let dir = tempfile::tempdir().expect("temp dir");
        let master_key =
            base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        match backend {
            Backend::Sqlite => Some(TestDb {
                backend,
                url: format!("sqlite://{}", dir.path().join("paybridge.db").display()),
                dir,
                pg_name: None,
                master_key,
            }),
            Backend::Postgres => {
                use sqlx::Connection;
                let admin = pg_admin_url();
                let mut conn = match sqlx::PgConnection::connect(&admin).await {
                    Ok(c) => c,
                    Err(e) => {
                        if std::env::var("CI").as_deref() == Ok("true") {
                            panic!("PostgreSQL is unreachable at {admin} and CI=true: {e}");
                        }
                        eprintln!("SKIPPED: PostgreSQL unreachable at {admin}: {e}");
                        return None;
                    }
                };
                let run = std::env::var("PAYBRIDGE_TEST_RUN").unwrap_or_else(|_| "local".into());
                let name = format!("pbt_{run}_{}", random_suffix());
                sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let base = admin
                    .rsplit_once('/')
                    .map(|(b, _)| b.to_owned())
                    .unwrap_or(admin.clone());
                Some(TestDb {
                    backend,
                    url: format!("{base}/{name}"),
                    dir,
                    pg_name: Some(name),
                    master_key,
                })
            }
        }
    }

    /// Every text value stored anywhere in the database, for "is this secret stored
    /// in plain text" checks. On SQLite the raw file bytes (with its WAL) are used.
    pub async fn all_stored_text(&self) -> String {
        match self.backend {
            Backend::Sqlite => {
                let mut out = Vec::new();
                for f in ["paybridge.db", "paybridge.db-wal"] {
                    if let Ok(b) = std::fs::read(self.dir.path().join(f)) {
                        out.extend(b);
                    }
                }
                String::from_utf8_lossy(&out).into_owned()
            }
            Backend::Postgres => {
                use sqlx::{Connection, Row};
                let mut conn = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("connect");
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
                )
                .fetch_all(&mut conn)
                .await
                .unwrap();
                let mut out = String::new();
                for t in tables {
                    let rows = sqlx::query(&format!("SELECT t::text FROM \"{t}\" t"))
                        .fetch_all(&mut conn)
                        .await
                        .unwrap();
                    for r in rows {
                        out.push_str(&r.get::<String, _>(0));
                        out.push('\n');
                    }
                }
                out
            }
        }
    }

    /// Runs one SQL statement that returns a single integer (test inspection only).
    /// Typed connections, not `Any`: the store installs `Any`'s drivers itself (its
    /// SQLite writer has a driver of its own), and they can be installed only once.
    pub async fn scalar(&self, sql: &str) -> i64 {
        use sqlx::Connection;
        match self.backend {
            Backend::Sqlite => {
                let url = format!("{}?mode=ro", self.url);
                let mut conn = sqlx::SqliteConnection::connect(&url)
                    .await
                    .expect("connect");
                let v: i64 = sqlx::query_scalar(sql)
                    .fetch_one(&mut conn)
                    .await
                    .expect(sql);
                let _ = conn.close().await;
                v
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("connect");
                let v: i64 = sqlx::query_scalar(sql)
                    .fetch_one(&mut conn)
                    .await
                    .expect(sql);
                let _ = conn.close().await;
                v
            }
        }
    }

    pub async fn execute(&self, sql: &str) {
        use sqlx::Connection;
        match self.backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .expect("connect");
                sqlx::query(sql).execute(&mut conn).await.expect(sql);
                let _ = conn.close().await;
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("connect");
                sqlx::query(sql).execute(&mut conn).await.expect(sql);
                let _ = conn.close().await;
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        let admin = pg_admin_url();
        // Drop runs outside any runtime guarantee; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut c)
                            .await;
                }
            });
        })
        .join();
    }
}

/// The repository's root (where `scripts/` and the test virtualenv live).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/testkit sits two levels below the root")
        .to_path_buf()
}

/// The Python of the test virtualenv that `scripts/test` makes (with `stripe`,
/// `localstripe` and `standardwebhooks` installed): `PAYBRIDGE_TEST_VENV`, or
/// `.venv-test` at the repository's root.
pub fn venv_bin(program: &str) -> std::path::PathBuf {
    let venv = std::env::var("PAYBRIDGE_TEST_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".venv-test"));
    let path = venv.join("bin").join(program);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test (it creates the test virtualenv), or set PAYBRIDGE_TEST_VENV",
        path.display()
    );
    path
}

/// Runs a Python snippet in the test virtualenv; returns its stdout.
pub fn python(code: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(venv_bin("python"))
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A `localstripe` (PyPI) process on a free loopback port, stopped on drop.
pub struct LocalStripe {
    pub base: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl LocalStripe {
    pub async fn start() -> LocalStripe {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        let child = std::process::Command::new(venv_bin("localstripe"))
            .args(["--port", &port.to_string(), "--from-scratch"])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start localstripe");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "localstripe did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        LocalStripe {
            base,
            child,
            _dir: dir,
        }
    }
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
