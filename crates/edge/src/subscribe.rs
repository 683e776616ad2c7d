//! Opening a subscription with exact resume, shared by every transport.
//!
//! [`open`] registers with the hub (which fixes the seam) and positions a bus reader at the
//! client's cursor; the caller queues its `subscribed` reply; [`replay`] then queues the history
//! between the cursor and the seam and releases the live records held back meanwhile.

use std::sync::Arc;

use herald_core::{BusError, ChannelKey, Cursor, PartitionReader};
use herald_protocol::ErrorCode;

use crate::hub::{SubscribeRequest, Subscription};
use crate::outbox::{CloseReason, OutItem, Outbox};
use crate::state::Edge;

/// A registered subscription whose history has not been replayed yet.
pub struct Opened {
    /// The subscription (already receiving live records into its pending list).
    pub sub: Arc<Subscription>,
    /// The position to report in `subscribed` (the seam, or the client's cursor if ahead).
    pub cursor: String,
    /// Whether the history after `since` is complete.
    pub recovered: bool,
    history: History,
    seam: u64,
}

/// Where the replayed history comes from.
enum History {
    /// Nothing to replay.
    None,
    /// The hub's recent-history cache had all of it.
    Cached(Vec<Arc<herald_core::Record>>),
    /// Read from the bus.
    Bus(Box<dyn PartitionReader>),
}

/// How a replay ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplayEnd {
    /// Everything up to the seam was queued and the subscription is live.
    Live,
    /// `limit` records were queued before the seam; the subscription is still held back (the
    /// caller unregisters it). The cursor of the last queued record is where to continue.
    Limited,
    /// The connection closed meanwhile.
    Closed,
}

/// Registers a subscription to `channels` (all of one account), resuming after `since`. The
/// partition is consumed from now on (until [`close`] releases it).
pub async fn open(
    edge: &Arc<Edge>,
    outbox: Arc<Outbox>,
    channels: Vec<ChannelKey>,
    since: Option<&Cursor>,
    presence_events: bool,
) -> Result<Opened, ErrorCode> {
    let hub = &edge.hub;
    let since_off = since.and_then(|c| if &c.epoch == hub.epoch() { c.offset_for(hub.region()) } else { None });
    let partition = edge.bus.partition_of(&channels[0].account);
    if let Err(e) = edge.consumers.acquire(edge, partition).await {
        tracing::warn!(error = %e, partition, "cannot start consuming the partition");
        return Err(ErrorCode::Unavailable);
    }
    let (sub, seam, cached) = hub.register(SubscribeRequest {
        outbox,
        channels,
        since: since_off,
        replay: since_off.is_some(),
        presence_events,
        max_pending_bytes: edge.config.max_queued_bytes,
    });
    let mut recovered = since_off.is_some();
    let mut history = History::None;
    if let Some(c) = cached {
        edge.metrics.resumes_from_cache.increment(1);
        history = History::Cached(c);
    } else if let Some(from) = since_off.filter(|&o| o < seam) {
        match edge.bus.open(partition, from).await {
            Ok(r) => history = History::Bus(r),
            Err(BusError::Truncated { .. }) => recovered = false,
            Err(e) => {
                close(edge, &sub);
                tracing::warn!(error = %e, "bus unavailable for replay");
                return Err(ErrorCode::Unavailable);
            }
        }
    }
    if matches!(history, History::None) {
        sub.finish_replay(None);
    }
    let cursor = hub.cursor_at(seam.max(since_off.unwrap_or(0)));
    Ok(Opened { sub, cursor, recovered, history, seam })
}

/// Ends a subscription and releases its partition.
pub fn close(edge: &Arc<Edge>, sub: &Subscription) {
    close_at(edge, sub);
}

/// Ends a subscription, releases its partition, and returns the exact position where it stopped
/// (a `since` that continues without gap or duplicate).
pub fn close_at(edge: &Arc<Edge>, sub: &Subscription) -> u64 {
    let next = edge.hub.unregister_at(sub);
    edge.consumers.release(edge, sub.partition);
    next
}

/// Queues the history of an opened subscription, then makes it live. At most `limit` records
/// are queued when a limit is given. The replay waits for room in the outbox rather than
/// overflowing it, so a long history never marks a client lagged by itself.
pub async fn replay(edge: &Edge, opened: Opened, limit: Option<usize>) -> (Arc<Subscription>, ReplayEnd) {
    let Opened { sub, history, seam, .. } = opened;
    let high_water = edge.config.max_queued_bytes / 2;
    let mut queued = 0usize;
    let mut reader = match history {
        History::None => return (sub, ReplayEnd::Live),
        History::Bus(r) => r,
        History::Cached(records) => {
            for r in records {
                if let Some(end) = queue(edge, &sub, &r, &mut queued, limit, high_water).await {
                    return (sub, end);
                }
            }
            sub.finish_replay(None);
            return (sub, ReplayEnd::Live);
        }
    };
    while reader.position() < seam {
        let want = ((seam - reader.position()) as usize).min(512);
        let batch = match reader.next_batch(want).await {
            Ok(b) => b,
            Err(e) => {
                // Retention overtook a very slow replay, or the bus went away: the client
                // reconnects and resumes (and learns `recovered:false` if history is gone).
                tracing::warn!(error = %e, "replay interrupted");
                sub.outbox.close(CloseReason::Lagged);
                return (sub, ReplayEnd::Closed);
            }
        };
        for r in batch {
            if r.offset >= seam {
                break;
            }
            if !sub.channels.iter().any(|c| c.channel == r.channel && c.account == r.account) {
                continue;
            }
            if let Some(end) = queue(edge, &sub, &r, &mut queued, limit, high_water).await {
                return (sub, end);
            }
        }
    }
    sub.finish_replay(None);
    (sub, ReplayEnd::Live)
}

/// Queues one replayed record, waiting for room first. `Some` when the replay must end here.
async fn queue(edge: &Edge, sub: &Subscription, r: &herald_core::Record, queued: &mut usize, limit: Option<usize>, high_water: usize) -> Option<ReplayEnd> {
    if sub.outbox.queued_bytes() >= high_water && !sub.outbox.wait_for_room(high_water).await {
        return Some(ReplayEnd::Closed);
    }
    if !sub.outbox.push(OutItem::Record(edge.hub.encode(r))) {
        return Some(ReplayEnd::Closed);
    }
    *queued += 1;
    limit.is_some_and(|l| *queued >= l).then_some(ReplayEnd::Limited)
}
