//! Starts the release `paybridge` binary (next to this one) on a throwaway database.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use paybridge_testkit::{Backend, TestDb};
use serde_json::Value;

pub struct BenchServer {
    pub base: String,
    pub root: String,
    child: Child,
    _db: Option<TestDb>,
    http: reqwest::Client,
}

pub struct AppKeys {
    pub id: String,
    pub admin: String,
    pub server: String,
    pub publishable: String,
}

fn binary() -> std::path::PathBuf {
    let me = std::env::current_exe().expect("current exe");
    me.with_file_name("paybridge")
}

impl BenchServer {
    pub async fn start(backend: Backend, env: &[(&str, &str)]) -> anyhow::Result<BenchServer> {
        let db = TestDb::new(backend)
            .await
            .ok_or_else(|| anyhow::anyhow!("PostgreSQL unavailable"))?;
        let mut s = BenchServer::start_on(&db, env).await?;
        s._db = Some(db);
        Ok(s)
    }

    pub async fn start_on(db: &TestDb, env: &[(&str, &str)]) -> anyhow::Result<BenchServer> {
        let root = format!("pb_root_bench_{}", paybridge_testkit::random_suffix());
        let mut cmd = Command::new(binary());
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &db.url,
        ])
        .current_dir(db.dir.path())
        .env("PAYBRIDGE_ROOT_KEY", &root)
        .env("PAYBRIDGE_MASTER_KEY", &db.master_key)
        .env("PAYBRIDGE_NO_DEMO", "true")
        .env("PAYBRIDGE_LOG", "warn")
        // The load generator is one address sending what thousands of storefront
        // visitors would (the products and checkout benchmarks use the publishable key),
        // and 20,000 webhooks/s to one app: far past the per-address and per-app
        // defaults, which are for real traffic. The buckets are still checked on every
        // request, so their cost is measured; only their size is lifted.
        .env("PAYBRIDGE_RATE_LIMIT_ANONYMOUS", "1000000,1000000")
        .env("PAYBRIDGE_RATE_LIMIT_PUBLISHABLE", "1000000,1000000")
        .env("PAYBRIDGE_RATE_LIMIT_PUBLISHABLE_WRITE", "1000000,1000000")
        .env("PAYBRIDGE_RATE_LIMIT_WEBHOOK", "1000000,1000000")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().expect("stdout");
        let base = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let found = lines
                .by_ref()
                .map_while(Result::ok)
                .find_map(|l| l.split("listening on ").nth(1).map(|b| b.trim().to_owned()));
            // Keep draining so the server never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            found
        })
        .await?
        .ok_or_else(|| anyhow::anyhow!("paybridge did not start"))?;
        Ok(BenchServer {
            base,
            root,
            child,
            _db: None,
            http: reqwest::Client::new(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory now, in MiB (Linux: `VmRSS` of /proc/<pid>/status).
    pub fn rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn put(&self, path: &str, key: &str, body: Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .put(self.url(path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status} {v}");
        Ok(v)
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status} {v}");
        Ok(v)
    }

    pub async fn app(&self) -> anyhow::Result<AppKeys> {
        let v = self
            .post("/v1/apps", &self.root, serde_json::json!({"name": "bench"}))
            .await?;
        let k = |r: &str| v["keys"][r].as_str().unwrap_or_default().to_owned();
        Ok(AppKeys {
            id: v["id"].as_str().unwrap_or_default().to_owned(),
            admin: k("admin"),
            server: k("server"),
            publishable: k("publishable"),
        })
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
