//! paybridge's server: the HTTP API (`http`), the use cases behind it (`service`) and
//! the background workers (`workers`), around one shared `AppState`.

pub mod bootstrap;
pub mod error;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod service;
pub mod state;
pub mod workers;

use std::future::Future;
use std::net::SocketAddr;

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
    let app = http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let stop_http = stop.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            stop_http.cancel();
        })
        .await?;
    stop.cancel();
    workers.wait().await;
    state.db.close().await;
    Ok(())
}
