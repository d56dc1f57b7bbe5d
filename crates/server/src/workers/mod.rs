//! Background workers, in the same process as the API. Each loops until the stop
//! token is cancelled; `wait` lets the current round finish on shutdown.

mod callbacks;
mod event_sync;
pub mod housekeeping;
pub mod leader;
mod reconciler;
mod sandbox;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

pub struct Workers {
    handles: Vec<JoinHandle<()>>,
}

pub fn spawn(state: AppState, stop: CancellationToken) -> Workers {
    Workers {
        handles: vec![
            tokio::spawn(leader::run(state.clone(), stop.clone())),
            tokio::spawn(housekeeping::run(state.clone(), stop.clone())),
            tokio::spawn(housekeeping::planner_statistics(
                state.clone(),
                stop.clone(),
            )),
            tokio::spawn(reconciler::run(state.clone(), stop.clone())),
            tokio::spawn(sandbox::run(state.clone(), stop.clone())),
            tokio::spawn(callbacks::run(state.clone(), stop.clone())),
            tokio::spawn(event_sync::run(state.clone(), stop.clone())),
            tokio::spawn(crate::hub::run(state, stop)),
        ],
    }
}

impl Workers {
    pub async fn wait(self) {
        for h in self.handles {
            let _ = h.await;
        }
    }
}
