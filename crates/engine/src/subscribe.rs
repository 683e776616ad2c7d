//! Opening a subscription with exact resume, shared by every transport.
//!
//! [`open`] registers with the hub (which fixes the seam) and positions a bus reader at the
//! client's cursor; the caller queues its `subscribed` reply; [`replay`] then queues the history
//! between the cursor and the seam and releases the live records held back meanwhile.

use std::sync::Arc;

use herald_core::{BusError, ChannelKey, Cursor, PartitionReader, VersionVector};
use herald_protocol::ErrorCode;

use crate::hub::{SubscribeRequest, Subscription};
use crate::outbox::{CloseReason, OutItem, Outbox};
use crate::Engine;

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
    /// Other origins' positions the client had before this subscription: the replayed records'
    /// cursors carry them (a lower bound of the truth, so never a loss).
    base_foreign: VersionVector,
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

pub use crate::hub::Delivery;

/// Registers a subscription to `channels` (all of one account), resuming after `since`. The
/// partition is consumed from now on (until [`close`] releases it).
///
/// A cursor of this region and epoch is a local position: history is `[since, seam)`. A cursor
/// issued by **another region** is a position per origin: history is every record of the
/// partition the client has not seen there, found by scanning back from the seam
/// ([`locate`]), and live records it saw there are skipped. A cursor of this region but another
/// epoch is from a log that no longer exists: nothing is replayed and `recovered` is false.
pub async fn open(
    engine: &Arc<Engine>,
    outbox: Arc<Outbox>,
    channels: Vec<ChannelKey>,
    since: Option<&Cursor>,
    delivery: Delivery,
) -> Result<Opened, ErrorCode> {
    let hub = &engine.hub;
    let (mut since_off, mut base_foreign, mut elsewhere) = (None, VersionVector::new(), VersionVector::new());
    match since {
        Some(c) if c.issuer().0 == hub.region() && &c.epoch == hub.epoch() => {
            since_off = Some(c.issuer().1);
            base_foreign = c.origins().clone();
        }
        Some(c) if c.issuer().0 != hub.region() => elsewhere = c.positions(),
        _ => {}
    }
    let partition = engine.bus.partition_of(&channels[0].account);
    if let Err(e) = engine.consumers.acquire(engine, partition).await {
        tracing::warn!(error = %e, partition, "cannot start consuming the partition");
        return Err(ErrorCode::Unavailable);
    }
    let (sub, seam, cached) = hub.register(SubscribeRequest {
        outbox,
        channels,
        since: since_off,
        skip_origins: elsewhere.clone(),
        replay: since_off.is_some() || !elsewhere.is_empty(),
        presence_events: delivery.presence_events,
        every: delivery.every,
        max_pending_bytes: engine.settings.max_queued_bytes,
    });
    let mut recovered = since_off.is_some();
    let mut history = History::None;
    if !elsewhere.is_empty() {
        // The client's positions from the other region also describe what it has seen of ours.
        base_foreign = elsewhere.without(hub.region());
        let issuer = since.map(|c| (c.issuer().0.clone(), c.epoch.clone()));
        match locate(engine, partition, seam, &elsewhere, issuer.as_ref()).await {
            Ok((start, complete)) => {
                recovered = complete;
                since_off = Some(start);
                if start < seam {
                    let (recent_from, recent) = hub.recent(partition);
                    history = if start >= recent_from {
                        History::Cached(recent.into_iter().filter(|r| r.offset >= start && r.offset < seam && sub.wants(r)).collect())
                    } else {
                        match engine.open_reader(partition, start).await {
                            Ok(r) => History::Bus(r),
                            Err(e) => return Err(abandon(engine, &sub, &e, "bus unavailable for replay")),
                        }
                    };
                }
            }
            Err(e) => return Err(abandon(engine, &sub, &e, "bus unavailable for a cross-region resume")),
        }
    } else if let Some(c) = cached {
        engine.metrics.resumes_from_cache.increment(1);
        history = History::Cached(c);
    } else if let Some(from) = since_off.filter(|&o| o < seam) {
        match engine.open_reader(partition, from).await {
            Ok(r) => history = History::Bus(r),
            Err(BusError::Truncated { .. }) => recovered = false,
            Err(e) => return Err(abandon(engine, &sub, &e, "bus unavailable for replay")),
        }
    }
    if let Some(from) = since_off.filter(|&o| o < seam)
        && hub.gap_within(partition, from, seam)
    {
        // A confirmed hole lies between the cursor and the seam: the history is not complete,
        // so say so (the client refetches its state) and go live from the seam.
        recovered = false;
        history = History::None;
    }
    if matches!(history, History::None) {
        sub.finish_replay(None);
    }
    let foreign = hub.foreign_now(partition).merged(&base_foreign);
    let cursor = hub.cursor_with(seam.max(since_off.unwrap_or(0)), &foreign);
    Ok(Opened { sub, cursor, recovered, history, seam, base_foreign })
}

/// How far back (records) a cross-region resume looks for where the client's history ends.
pub const MAX_LOCATE_SCAN: u64 = 100_000;

/// Where, in this region's partition, the first record after a cursor from another region is:
/// scanning back from `seam` (the recent-history cache first, then the bus), for each origin in
/// `seen` the earliest record at or past the client's position, until a record before it proves
/// the rest of that origin older. Returns the start offset and whether every origin was proven
/// (false: history before the retained start may be missing).
///
/// `issuer` is the cursor's issuing region and its log's epoch then. A record copied from that
/// region under another epoch means its log was reset since: the cursor's positions no longer
/// name records there, so nothing is replayed and the history is not complete (`(seam, false)`).
pub async fn locate(
    engine: &Arc<Engine>,
    partition: u32,
    seam: u64,
    seen: &VersionVector,
    issuer: Option<&(herald_core::RegionName, herald_core::Epoch)>,
) -> Result<(u64, bool), BusError> {
    let mut start = seam;
    let mut open: Vec<(&herald_core::RegionName, u64)> = seen.iter().collect();
    let mut other_epoch = false;
    // One step of the backward scan; false once every origin is proven.
    let mut step = |r: &herald_core::Record| -> bool {
        if let Some((region, epoch)) = issuer
            && r.origin_region == *region
            && r.origin_epoch.as_ref().is_some_and(|e| e != epoch)
        {
            other_epoch = true;
            return false;
        }
        if let Some(i) = open.iter().position(|(o, _)| **o == r.origin_region) {
            if r.origin_offset >= open[i].1 {
                start = start.min(r.offset);
            } else {
                open.swap_remove(i);
            }
        }
        !open.is_empty()
    };
    let (recent_from, recent) = engine.hub.recent(partition);
    for r in recent.iter().rev().filter(|r| r.offset < seam) {
        if !step(r) {
            return Ok(if other_epoch { (seam, false) } else { (start, true) });
        }
    }
    let low = engine.bus.bounds(partition).await?.low;
    let mut end = recent_from.min(seam);
    // A cursor naming a region this partition never saw would otherwise scan all of it: stop
    // after MAX_LOCATE_SCAN records and report the history incomplete.
    let floor = end.saturating_sub(MAX_LOCATE_SCAN).max(low);
    while end > floor {
        let from = end.saturating_sub(1000).max(floor);
        let mut reader = engine.open_reader(partition, from).await?;
        let mut window = Vec::new();
        while let Some(batch) = reader.next_batch_before(end, 1000).await? {
            window.extend(batch);
        }
        for r in window.iter().rev() {
            if !step(r) {
                return Ok(if other_epoch { (seam, false) } else { (start, true) });
            }
        }
        end = from;
    }
    // Reached the oldest retained record (complete only if nothing was ever dropped) or the scan
    // limit (incomplete).
    Ok((start, floor == 0))
}

/// Ends a subscription whose history the bus could not give, and says why.
fn abandon(engine: &Arc<Engine>, sub: &Subscription, e: &BusError, what: &str) -> ErrorCode {
    close(engine, sub);
    tracing::warn!(error = %e, "{what}");
    ErrorCode::Unavailable
}

/// Ends a subscription and releases its partition.
pub fn close(engine: &Arc<Engine>, sub: &Subscription) {
    close_at(engine, sub);
}

/// Ends a subscription, releases its partition, and returns the exact position where it stopped
/// (a `since` that continues without gap or duplicate).
pub fn close_at(engine: &Arc<Engine>, sub: &Subscription) -> String {
    let cursor = engine.hub.unregister_at(sub);
    engine.consumers.release(engine, sub.partition);
    cursor
}

/// Queues the history of an opened subscription, then makes it live. At most `limit` records
/// are queued when a limit is given. The replay waits for room in the outbox rather than
/// overflowing it, so a long history never marks a client lagged by itself.
pub async fn replay(engine: &Engine, opened: Opened, limit: Option<usize>) -> (Arc<Subscription>, ReplayEnd) {
    let Opened { sub, history, seam, base_foreign, .. } = opened;
    let mut copies = ReplayCopies::new(&base_foreign);
    let high_water = engine.settings.max_queued_bytes / 2;
    let mut queued = 0usize;
    // On latest-value channels a resume sends the newest record per key, not the whole history.
    let latest = sub.channels.iter().any(|c| engine.hub.is_latest_value(&c.channel));
    let history = match history {
        History::Bus(mut reader) if latest => {
            let mut all = Vec::new();
            loop {
                match reader.next_batch_before(seam, 512).await {
                    Ok(Some(b)) => all.extend(b.into_iter().filter(|r| sub.wants(r) && copies.first_time(engine, r))),
                    Ok(None) => break,
                    Err(e) => {
                        let end = interrupted(engine, &sub, e);
                        return (sub, end);
                    }
                }
            }
            History::Cached(newest_per_key(engine, all))
        }
        History::Cached(records) if latest => History::Cached(newest_per_key(engine, records)),
        h => h,
    };
    let mut reader = match history {
        History::None => return (sub, ReplayEnd::Live),
        History::Bus(r) => r,
        History::Cached(records) => {
            for r in records {
                if !copies.first_time(engine, &r) {
                    continue;
                }
                if let Some(end) = queue(engine, &sub, &r, &base_foreign, &mut queued, limit, high_water).await {
                    return (sub, end);
                }
            }
            sub.finish_replay(None);
            return (sub, ReplayEnd::Live);
        }
    };
    loop {
        let batch = match reader.next_batch_before(seam, 512).await {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e) => {
                let end = interrupted(engine, &sub, e);
                return (sub, end);
            }
        };
        for r in batch {
            if !sub.wants(&r) || !copies.first_time(engine, &r) {
                continue;
            }
            if let Some(end) = queue(engine, &sub, &r, &base_foreign, &mut queued, limit, high_water).await {
                return (sub, end);
            }
        }
    }
    sub.finish_replay(None);
    (sub, ReplayEnd::Live)
}

/// Ends a replay the bus could not finish. Retention overtook a very slow replay, a hole was
/// found in the history, or the bus went away: the client reconnects and resumes, and learns
/// `recovered:false` if the history is gone or incomplete (a hole is remembered by the hub).
fn interrupted(engine: &Engine, sub: &Subscription, e: BusError) -> ReplayEnd {
    match e {
        BusError::Gap { from, to } => {
            tracing::error!(partition = sub.partition, from, to, "records missing from the bus during a replay: a hole in the partition");
            engine.metrics.bus_gaps.increment(1);
            engine.hub.note_gap(sub.partition, None, from, to);
            engine.note_bus_gap();
        }
        BusError::Truncated { requested, low } => engine.hub.note_gap(sub.partition, None, requested, low),
        e => tracing::warn!(error = %e, "replay interrupted"),
    }
    sub.outbox.close(CloseReason::Lagged);
    ReplayEnd::Closed
}

/// What a replay has seen, to drop second copies of records: replicated ones by origin position
/// (starting from the client's cursor), keyed ones by message id (those the hub dispatched, and
/// those earlier in this replay).
struct ReplayCopies {
    origins: VersionVector,
    keyed: crate::copies::KeyedIds,
}

impl ReplayCopies {
    fn new(cursor_origins: &VersionVector) -> Self {
        Self { origins: cursor_origins.clone(), keyed: crate::copies::KeyedIds::new(u64::MAX, usize::MAX) }
    }

    /// False for a second copy of a record already replayed or seen by the client.
    fn first_time(&mut self, engine: &Engine, r: &herald_core::Record) -> bool {
        let local = engine.hub.region();
        if crate::copies::is_replica_copy(&self.origins, r, local) || self.keyed.note(r, 0) || engine.hub.is_known_copy(r) {
            engine.metrics.copies_dropped.increment(1);
            return false;
        }
        crate::copies::note_origin(&mut self.origins, r, local);
        true
    }
}

/// Keeps, of `records` (in offset order), the last per latest-value key, and every record
/// without one, in offset order.
fn newest_per_key(engine: &Engine, records: Vec<Arc<herald_core::Record>>) -> Vec<Arc<herald_core::Record>> {
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<_> = records.into_iter().rev().filter(|r| engine.hub.latest_key(r).is_none_or(|k| seen.insert(k))).collect();
    kept.reverse();
    kept
}

/// Queues one replayed record, waiting for room first. `Some` when the replay must end here.
async fn queue(
    engine: &Engine,
    sub: &Subscription,
    r: &herald_core::Record,
    foreign: &VersionVector,
    queued: &mut usize,
    limit: Option<usize>,
    high_water: usize,
) -> Option<ReplayEnd> {
    if sub.outbox.queued_bytes() >= high_water && !sub.outbox.wait_for_room(high_water).await {
        return Some(ReplayEnd::Closed);
    }
    if !sub.outbox.push(OutItem::Record(engine.hub.encode(r, foreign))) {
        return Some(ReplayEnd::Closed);
    }
    *queued += 1;
    limit.is_some_and(|l| *queued >= l).then_some(ReplayEnd::Limited)
}
