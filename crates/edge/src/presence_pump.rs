//! The presence event pump: join and leave events from presence storage to the local
//! subscribers that asked for them.

use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::state::Edge;

/// Starts the task that forwards presence events to local subscribers.
pub fn start(edge: &Arc<Edge>, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(presence_pump(edge.clone(), stop))
}

async fn presence_pump(edge: Arc<Edge>, stop: CancellationToken) {
    let mut rx = edge.presence.events();
    loop {
        let ev = tokio::select! {
            _ = stop.cancelled() => return,
            e = rx.recv() => e,
        };
        match ev {
            Ok(e) => edge.engine.hub.dispatch_presence(&e),
            Err(RecvError::Lagged(n)) => tracing::warn!(missed = n, "presence events lagged; some join/leave events were not delivered"),
            Err(RecvError::Closed) => return,
        }
    }
}
