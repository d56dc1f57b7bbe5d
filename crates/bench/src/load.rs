//! A closed-loop load generator: `connections` tasks, each with its own HTTP/1.1
//! keep-alive connection, sending the next request as soon as the last one answered.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Mutex;

#[derive(Clone)]
pub struct Stats {
    pub ok: u64,
    pub errors: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, {} ok, {} errors",
            self.rps, self.p50_ms, self.p99_ms, self.max_ms, self.ok, self.errors
        )
    }
}

/// Runs the load for `duration`; `make(client, n)` builds the n-th request of a task.
pub async fn run<F>(connections: usize, duration: Duration, make: F) -> Stats
where
    F: Fn(&reqwest::Client, u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3).expect("histogram")));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|task| {
            let make = make.clone();
            let hist = hist.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .http1_only()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .expect("client");
                let mut local = Histogram::<u64>::new(3).expect("histogram");
                let (mut ok, mut errors) = (0u64, 0u64);
                let mut n = (task as u64) << 40;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let res = make(&client, n).send().await;
                    n += 1;
                    match res {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            ok += 1;
                            let _ = local.record(t.elapsed().as_micros() as u64);
                        }
                        _ => errors += 1,
                    }
                }
                hist.lock().await.add(&local).expect("merge");
                (ok, errors)
            })
        })
        .collect();
    let (mut ok, mut errors) = (0, 0);
    for t in tasks {
        let (o, e) = t.await.expect("load task");
        ok += o;
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let h = hist.lock().await;
    Stats {
        ok,
        errors,
        rps: ok as f64 / elapsed,
        p50_ms: h.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
        max_ms: h.max() as f64 / 1000.0,
    }
}

pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
