//! Partition consumers and the presence event pump: the background tasks that feed the hub.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use herald_core::{BusError, PartitionReader};

use crate::state::Edge;

/// Records one consumer read asks for at most.
const READ_BATCH: usize = 1024;

/// Positions every partition's consumer at the end of its log (new subscriptions replay anything
/// older from the bus), sets the hub's seams accordingly, and starts the consumers.
pub async fn start(edge: &Arc<Edge>, stop: CancellationToken) -> Result<Vec<JoinHandle<()>>, BusError> {
    let mut tasks = Vec::new();
    for p in 0..edge.bus.partitions() {
        let next = edge.bus.bounds(p).await?.next;
        edge.hub.start_partition(p, next);
        let reader = edge.bus.open(p, next).await?;
        tasks.push(tokio::spawn(consume(edge.clone(), p, reader, stop.clone())));
    }
    tasks.push(tokio::spawn(presence_pump(edge.clone(), stop)));
    Ok(tasks)
}

async fn consume(edge: Arc<Edge>, partition: u32, mut reader: Box<dyn PartitionReader>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let batch = tokio::select! {
            _ = stop.cancelled() => return,
            b = reader.next_batch(READ_BATCH) => b,
        };
        match batch {
            Ok(records) => {
                backoff = Duration::from_millis(50);
                edge.hub.dispatch(partition, &records);
            }
            Err(BusError::Truncated { requested, low }) => {
                // Records expired before this node saw them; subscribers resuming across the gap
                // learn it from `recovered:false`.
                tracing::error!(partition, requested, low, "consumer fell behind retention");
                edge.metrics.records_skipped.increment(low - requested);
                reader.seek(low);
            }
            Err(e) => {
                edge.metrics.bus_errors.increment(1);
                tracing::warn!(partition, error = %e, "bus read failed; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn presence_pump(edge: Arc<Edge>, stop: CancellationToken) {
    let mut rx = edge.presence.events();
    loop {
        let ev = tokio::select! {
            _ = stop.cancelled() => return,
            e = rx.recv() => e,
        };
        match ev {
            Ok(e) => edge.hub.dispatch_presence(&e),
            Err(RecvError::Lagged(n)) => tracing::warn!(missed = n, "presence events lagged; some join/leave events were not delivered"),
            Err(RecvError::Closed) => return,
        }
    }
}
