//! paybridge's server: the HTTP API (`http`), the use cases behind it (`service`) and
//! the background workers (`workers`), around one shared `AppState`.

pub mod bootstrap;
pub mod error;
pub mod http;
pub mod hub;
pub mod listen;
pub mod metrics;
pub mod service;
pub mod state;
pub mod workers;

use std::future::Future;
use tokio::net::TcpListener;

pub use state::{AppState, Settings};

/// Serves the API on `listener` and runs the workers until `shutdown` resolves, then
/// stops taking connections, lets requests in flight finish, and stops the workers.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let stop = state.stop.clone();
    let workers = workers::spawn(state.clone(), stop.clone());
    let app = http::router(state.clone());
    // Rate-limit buckets that are full again are as good as forgotten: drop them.
    let pruning = state.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = every.tick() => pruning.limiter.prune(),
                _ = pruning.stop.cancelled() => return,
            }
        }
    });
    let stop_http = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        stop_http.cancel();
    });
    listen::serve(listener, app, state.settings.listen.clone(), stop.clone()).await?;
    stop.cancel();
    workers.wait().await;
    state.db.close().await;
    Ok(())
}
