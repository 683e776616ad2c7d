//! The local fan-out hub: which connection is subscribed to which channel, and the seam between
//! replayed history and live records.
//!
//! One [`PartitionHub`] per bus partition, behind a mutex, holds the subscriptions of the
//! channels in that partition and `next`, the offset after the last record dispatched. The
//! partition's consumer dispatches a batch under the lock; a subscription registers under the
//! same lock and reads `next` as its **seam**: every record below the seam it gets by replay from
//! the bus, every record at or above it live from the hub, so none is missed and none comes twice.
//! While the replay runs, live records wait in the subscription's pending list, then follow it.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald_core::{ChannelKey, Cursor, Epoch, PresenceChange, PresenceEvent, Record, RegionName, VersionVector, partition_for};
use herald_protocol::{ServerFrame, encode_message};

use crate::copies::{self, KeyedIds};
use crate::EngineMetrics;
use crate::outbox::{CloseReason, CompactRecord, EncodedRecord, OutItem, Outbox, Priority};

/// What a subscriber asked for besides its records.
#[derive(Clone, Copy, Debug, Default)]
pub struct Delivery {
    /// Join/leave events.
    pub presence_events: bool,
    /// At most one delivery per this interval (the client's `max_rate`): records in between are
    /// held and sent together, latest-value ones conflated by key.
    pub every: Option<std::time::Duration>,
}

/// A subscription: one connection, one or more channels of one account (one partition).
pub struct Subscription {
    /// Unique per node.
    pub id: u64,
    /// Where its frames go.
    pub outbox: Arc<Outbox>,
    /// Its channels (several for SSE and long-poll, one for a WebSocket subscribe).
    pub channels: Vec<ChannelKey>,
    /// The partition of its account.
    pub partition: u32,
    /// Live records below this offset are skipped (the client has them already).
    skip_below: u64,
    /// After a resume from another region's cursor: records from these origins below these
    /// origin offsets are skipped (the client saw them there). Empty otherwise.
    skip_origins: VersionVector,
    /// Whether it receives join/leave events.
    presence_events: bool,
    /// The client's `max_rate`, when it asked for one.
    gate: Option<Arc<Gate>>,
    replaying: AtomicBool,
    pending: Mutex<Pending>,
    max_pending_bytes: usize,
}

#[derive(Default)]
struct Pending {
    items: VecDeque<Arc<EncodedRecord>>,
    bytes: usize,
}

/// A client-requested delivery rate (`max_rate`): at most one delivery per `every`. Records that
/// arrive sooner are held, in order, and queued together when the interval is up; on a
/// latest-value channel a held record is replaced by a newer one with its key. Nothing else is
/// ever dropped, so the client's cursor stays exact.
pub struct Gate {
    every: Duration,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    items: Vec<Arc<EncodedRecord>>,
    bytes: usize,
    /// No delivery before this.
    next: Option<Instant>,
    /// A release is scheduled.
    armed: bool,
}

impl Gate {
    fn new(every: Duration) -> Arc<Self> {
        Arc::new(Self { every, held: Mutex::new(Held::default()) })
    }

    /// Queues `recs` now if the interval is up and nothing is held, else holds them until it is.
    fn offer(self: &Arc<Self>, outbox: &Arc<Outbox>, recs: &[Arc<EncodedRecord>], max_bytes: usize) {
        let now = Instant::now();
        let mut h = self.held.lock();
        if h.items.is_empty() && h.next.is_none_or(|n| now >= n) {
            h.next = Some(now + self.every);
            drop(h);
            outbox.push_records(recs);
            return;
        }
        for r in recs {
            if let Some(key) = &r.latest
                && let Some(i) = h.items.iter().position(|q| q.latest.as_ref() == Some(key))
            {
                let old = h.items.remove(i);
                h.bytes -= old.frame.len();
            }
            h.bytes += r.frame.len();
            h.items.push(r.clone());
        }
        if h.bytes > max_bytes {
            // As if the queue overflowed: the client resumes from its cursor.
            drop(h);
            outbox.close(CloseReason::Lagged);
            return;
        }
        if !h.armed {
            h.armed = true;
            let at = h.next.unwrap_or(now);
            let (gate, outbox) = (self.clone(), outbox.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                gate.release(&outbox);
            });
        }
    }

    /// Queues everything held.
    fn release(&self, outbox: &Outbox) {
        let mut h = self.held.lock();
        let items = std::mem::take(&mut h.items);
        h.bytes = 0;
        h.armed = false;
        h.next = Some(Instant::now() + self.every);
        // Under the lock, so a concurrent offer cannot queue newer records before these.
        if !items.is_empty() {
            outbox.push_records(&items);
        }
    }
}

impl Subscription {
    /// What delivery it asked for (kept across a pause).
    pub fn delivery(&self) -> Delivery {
        Delivery { presence_events: self.presence_events, every: self.gate.as_ref().map(|g| g.every) }
    }

    /// Whether this subscription should get `r` in a replay: one of its channels, not seen in
    /// another region.
    pub fn wants(&self, r: &Record) -> bool {
        self.channels.iter().any(|c| c.channel == r.channel && c.account == r.account) && !self.seen_elsewhere(&r.origin_region, r.origin_offset)
    }

    /// Whether the client has `origin`'s record at `origin_offset` already (from another region).
    pub fn seen_elsewhere(&self, origin: &RegionName, origin_offset: u64) -> bool {
        self.skip_origins.covers(origin, origin_offset)
    }

    /// The client's positions for other origins when it resumed from another region's cursor.
    pub fn resumed_origins(&self) -> &VersionVector {
        &self.skip_origins
    }

    fn deliver(&self, rec: &Arc<EncodedRecord>) {
        if rec.offset < self.skip_below || self.seen_elsewhere(&rec.origin, rec.origin_offset) {
            return;
        }
        if self.replaying.load(Ordering::Acquire) {
            let mut p = self.pending.lock();
            // Re-check under the lock: `finish_replay` flips the flag while holding it.
            if self.replaying.load(Ordering::Acquire) {
                p.bytes += rec.frame.len();
                if p.bytes > self.max_pending_bytes {
                    drop(p);
                    self.outbox.close(CloseReason::Lagged);
                    return;
                }
                p.items.push_back(rec.clone());
                return;
            }
        }
        self.queue(std::slice::from_ref(rec));
    }

    fn deliver_all(&self, recs: &[Arc<EncodedRecord>]) {
        if recs.len() == 1 || self.replaying.load(Ordering::Acquire) || recs[0].offset < self.skip_below || !self.skip_origins.is_empty() {
            for r in recs {
                self.deliver(r);
            }
            return;
        }
        self.queue(recs);
    }

    /// Queues live records, through the client's rate gate if it asked for one.
    fn queue(&self, recs: &[Arc<EncodedRecord>]) {
        match &self.gate {
            Some(g) => g.offer(&self.outbox, recs, self.max_pending_bytes),
            None => {
                self.outbox.push_records(recs);
            }
        }
    }

    /// Queues what the rate gate holds now (the subscription is ending or pausing: everything
    /// below its final cursor must be queued).
    fn release_held(&self) {
        if let Some(g) = &self.gate {
            g.release(&self.outbox);
        }
    }

    /// Ends the replay phase: queues the live records that arrived meanwhile, in order, and from
    /// now on live records go straight to the outbox. `until` drops pending records at or above
    /// it (long-poll stops early and must not return records after a gap).
    pub fn finish_replay(&self, until: Option<u64>) {
        let mut p = self.pending.lock();
        for rec in p.items.drain(..) {
            if until.is_some_and(|u| rec.offset >= u) {
                break;
            }
            self.outbox.push(OutItem::Record(rec));
        }
        p.bytes = 0;
        self.replaying.store(false, Ordering::Release);
    }
}

struct PartitionHub {
    /// Offset after the last record dispatched (the seam for new subscriptions).
    next: u64,
    channels: HashMap<ChannelKey, Vec<Arc<Subscription>>>,
    /// The most recent records dispatched, for resumes that need no bus read.
    recent: VecDeque<Arc<Record>>,
    /// The cache holds every record of the partition from this offset up to `next`.
    recent_from: u64,
    /// Bumped every time a consumer (re)starts: batches from an older consumer are ignored.
    generation: u64,
    /// For each other origin region, the origin offset after its last record below `next`
    /// (empty in a single-region deployment). Goes into every cursor, and tells a second copy
    /// of a replicated record from a new one.
    foreign: VersionVector,
    /// Keyed message ids dispatched recently: a second copy of one is not dispatched.
    keyed: KeyedIds,
    /// Holes the partition's readers confirmed (`from..to`), newest last: a resume across one
    /// is not `recovered`.
    gaps: VecDeque<(u64, u64)>,
}

/// Keyed ids a hub remembers per partition (and for how long): the bus's idempotency window.
const KEYED_IDS: usize = 20_000;
const KEYED_WINDOW_MS: u64 = 300_000;
/// Confirmed gaps a hub remembers per partition.
const GAPS_KEPT: usize = 64;

/// Parameters of a new subscription.
pub struct SubscribeRequest {
    /// Where frames go.
    pub outbox: Arc<Outbox>,
    /// Channels, all of one account.
    pub channels: Vec<ChannelKey>,
    /// The client's position (next offset), when it resumes.
    pub since: Option<u64>,
    /// The client's positions per origin, when it resumes from another region's cursor.
    pub skip_origins: VersionVector,
    /// Whether history will be replayed before live records (then live ones wait).
    pub replay: bool,
    /// Join/leave events wanted.
    pub presence_events: bool,
    /// The client's `max_rate`, as an interval.
    pub every: Option<Duration>,
    /// Bound on live records held back during replay.
    pub max_pending_bytes: usize,
}

/// The fan-out hub of one node.
pub struct Hub {
    parts: Vec<Mutex<PartitionHub>>,
    /// Latest-value channels: a pattern and the JSON pointer of the key.
    latest: Vec<(herald_core::ChannelPattern, String)>,
    /// Channel priorities: the first matching pattern wins; `normal` without one.
    priorities: Vec<(herald_core::ChannelPattern, Priority)>,
    recent_cap: usize,
    epoch: Epoch,
    region: RegionName,
    metrics: EngineMetrics,
    next_id: AtomicU64,
}

impl Hub {
    /// A hub for `partitions` partitions of a bus with this epoch and region, keeping the last
    /// `recent_cap` records of each consumed partition for resumes.
    pub fn new(partitions: u32, epoch: Epoch, region: RegionName, metrics: EngineMetrics, recent_cap: usize) -> Self {
        let parts = (0..partitions)
            .map(|_| {
                Mutex::new(PartitionHub {
                    next: 0,
                    channels: HashMap::new(),
                    recent: VecDeque::new(),
                    recent_from: 0,
                    generation: 0,
                    foreign: VersionVector::new(),
                    keyed: KeyedIds::new(KEYED_WINDOW_MS, KEYED_IDS),
                    gaps: VecDeque::new(),
                })
            })
            .collect();
        Self { parts, latest: Vec::new(), priorities: Vec::new(), recent_cap, epoch, region, metrics, next_id: AtomicU64::new(1) }
    }

    /// Declares latest-value channels (`[[edge.latest_value]]`): patterns and key pointers.
    pub fn with_latest_value(mut self, latest: Vec<(herald_core::ChannelPattern, String)>) -> Self {
        self.latest = latest;
        self
    }

    /// Declares channel priorities (`[[edge.priority]]`).
    pub fn with_priorities(mut self, priorities: Vec<(herald_core::ChannelPattern, Priority)>) -> Self {
        self.priorities = priorities;
        self
    }

    /// The priority of `channel`.
    pub fn priority(&self, channel: &herald_core::ChannelName) -> Priority {
        self.priorities.iter().find(|(p, _)| p.matches(channel)).map_or(Priority::Normal, |(_, pr)| *pr)
    }

    /// Whether `channel` is a latest-value channel.
    pub fn is_latest_value(&self, channel: &herald_core::ChannelName) -> bool {
        self.latest.iter().any(|(p, _)| p.matches(channel))
    }

    /// The conflation key of `r` (`channel \0 key`) on a latest-value channel; `None` elsewhere
    /// and for records without the key field.
    pub fn latest_key(&self, r: &Record) -> Option<Box<str>> {
        let (_, pointer) = self.latest.iter().find(|(p, _)| p.matches(&r.channel))?;
        if pointer.is_empty() {
            return Some(format!("{}\0", r.channel).into_boxed_str());
        }
        let data: serde_json::Value = serde_json::from_slice(&r.data).ok()?;
        let key = match data.pointer(pointer)? {
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        Some(format!("{}\0{key}", r.channel).into_boxed_str())
    }

    /// Number of partitions.
    pub fn partitions(&self) -> u32 {
        self.parts.len() as u32
    }

    /// The cursor string for "just after offset `next - 1`", knowing nothing of other origins.
    pub fn cursor_at(&self, next: u64) -> String {
        Cursor::single(self.epoch.clone(), self.region.clone(), next).to_string()
    }

    /// The cursor string for "just after offset `next - 1`", other origins seen up to `foreign`.
    pub fn cursor_with(&self, next: u64, foreign: &VersionVector) -> String {
        if foreign.is_empty() {
            return self.cursor_at(next);
        }
        Cursor::with_origins(self.epoch.clone(), self.region.clone(), next, foreign).to_string()
    }

    /// The partition's other-origin positions now.
    pub fn foreign_now(&self, partition: u32) -> VersionVector {
        self.parts[partition as usize].lock().foreign.clone()
    }

    /// The recent-history cache of `partition` (oldest first) and the offset it starts at.
    pub fn recent(&self, partition: u32) -> (u64, Vec<Arc<Record>>) {
        let p = self.parts[partition as usize].lock();
        (p.recent_from, p.recent.iter().cloned().collect())
    }

    /// The bus epoch this hub's cursors carry.
    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// The region this hub's cursors carry.
    pub fn region(&self) -> &RegionName {
        &self.region
    }

    /// Sets where the partition's (new) consumer starts, before any subscription registers, and
    /// empties its history cache. Returns the consumer's generation, which it passes to
    /// [`Hub::dispatch`]: a stopped consumer that still had a batch in hand cannot deliver it.
    pub fn start_partition(&self, partition: u32, next: u64, foreign: VersionVector) -> u64 {
        self.start_partition_after(partition, next, foreign, &[])
    }

    /// [`Hub::start_partition`], knowing the records just before `next` (oldest first): their
    /// keyed ids, so that a second copy of one after `next` is recognised.
    pub fn start_partition_after(&self, partition: u32, next: u64, foreign: VersionVector, tail: &[Arc<Record>]) -> u64 {
        let now = herald_core::now_ms();
        let mut p = self.parts[partition as usize].lock();
        p.next = next;
        p.foreign = foreign;
        p.recent.clear();
        p.recent_from = next;
        p.keyed = KeyedIds::new(KEYED_WINDOW_MS, KEYED_IDS);
        for r in tail.iter().filter(|r| r.offset < next) {
            p.keyed.note(r, now);
        }
        p.generation += 1;
        p.generation
    }

    /// Records that the partition's reader confirmed offsets `from..to` missing (consumer of
    /// `generation`, or `None` for a replay's reader): the seam moves past the hole, the history
    /// cache no longer spans it, and resumes from before it are no longer `recovered`.
    pub fn note_gap(&self, partition: u32, generation: Option<u64>, from: u64, to: u64) {
        let mut p = self.parts[partition as usize].lock();
        if generation.is_some_and(|g| g != p.generation) {
            return;
        }
        if !p.gaps.contains(&(from, to)) {
            p.gaps.push_back((from, to));
            if p.gaps.len() > GAPS_KEPT {
                p.gaps.pop_front();
            }
        }
        if generation.is_some() && p.next < to {
            p.next = to;
            p.recent.clear();
            p.recent_from = to;
        }
    }

    /// Whether a confirmed hole lies within `[from, to)` of `partition`.
    pub fn gap_within(&self, partition: u32, from: u64, to: u64) -> bool {
        self.parts[partition as usize].lock().gaps.iter().any(|&(a, b)| a < to && b > from)
    }

    /// Whether `r`, read from the bus by a replay, is a second copy of a record the hub already
    /// dispatched at a lower offset (keyed ids; replicated copies are told by the replay itself).
    pub fn is_known_copy(&self, r: &Record) -> bool {
        // Only keyed ids can repeat: the others never take the partition's lock here.
        copies::is_keyed(&r.id) && self.parts[r.partition as usize].lock().keyed.has_earlier_copy(r)
    }

    /// Encodes a record as a `message` frame whose cursor says other origins were seen up to
    /// `foreign`.
    pub fn encode(&self, r: &Record, foreign: &VersionVector) -> Arc<EncodedRecord> {
        self.encode_traced(r, foreign, None)
    }

    /// [`Hub::encode`] for a live record whose delivery is traced under `trace`.
    fn encode_traced(&self, r: &Record, foreign: &VersionVector, trace: Option<herald_core::TraceParent>) -> Arc<EncodedRecord> {
        let cursor = self.cursor_with(r.offset + 1, foreign);
        let frame = encode_message(r.channel.as_str(), r.id.as_str(), &cursor, r.published_at_ms, &r.data);
        let latest = if self.latest.is_empty() { None } else { self.latest_key(r) };
        let priority = if self.priorities.is_empty() { Priority::Normal } else { self.priority(&r.channel) };
        Arc::new(EncodedRecord {
            frame,
            cursor: cursor.into_boxed_str(),
            offset: r.offset,
            origin: r.origin_region.clone(),
            origin_offset: r.origin_offset,
            latest,
            channel: r.channel.clone(),
            priority,
            compact: CompactRecord::new(r.id.clone(), r.published_at_ms, r.data.clone()),
            trace,
        })
    }

    /// Registers a subscription and returns it with its seam (the partition's `next` now) and,
    /// when the history cache covers `[since, seam)`, the subscription's records in that range.
    pub fn register(&self, req: SubscribeRequest) -> (Arc<Subscription>, u64, Option<Vec<Arc<Record>>>) {
        let account = &req.channels[0].account;
        let partition = partition_for(account, self.partitions());
        let mut part = self.parts[partition as usize].lock();
        let seam = part.next;
        let cached = match req.since {
            Some(since) if since < seam && since >= part.recent_from => Some(
                part.recent
                    .iter()
                    .filter(|r| r.offset >= since && req.channels.iter().any(|c| c.account == r.account && c.channel == r.channel))
                    .cloned()
                    .collect(),
            ),
            _ => None,
        };
        let sub = Arc::new(Subscription {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            outbox: req.outbox,
            channels: req.channels,
            partition,
            skip_below: req.since.unwrap_or(0),
            skip_origins: req.skip_origins,
            presence_events: req.presence_events,
            gate: req.every.map(Gate::new),
            replaying: AtomicBool::new(req.replay),
            pending: Mutex::new(Pending::default()),
            max_pending_bytes: req.max_pending_bytes,
        });
        for ch in &sub.channels {
            part.channels.entry(ch.clone()).or_default().push(sub.clone());
        }
        drop(part);
        self.metrics.subscriptions.increment(1.0);
        (sub, seam, cached)
    }

    /// Removes a subscription and returns the partition's position at that moment as a cursor,
    /// atomically: every record of its channels below it was queued to the subscription, none at
    /// or above it will be.
    pub fn unregister_at(&self, sub: &Subscription) -> String {
        let mut part = self.parts[sub.partition as usize].lock();
        Self::remove(&mut part, sub);
        sub.release_held();
        let next = part.next;
        let foreign = part.foreign.merged(&sub.skip_origins);
        drop(part);
        self.metrics.subscriptions.decrement(1.0);
        self.cursor_with(next, &foreign)
    }

    fn remove(part: &mut PartitionHub, sub: &Subscription) {
        for ch in &sub.channels {
            if let Some(v) = part.channels.get_mut(ch) {
                v.retain(|s| s.id != sub.id);
                if v.is_empty() {
                    part.channels.remove(ch);
                }
            }
        }
    }

    /// Fans a batch of one partition's records out to local subscribers, in order, and moves the
    /// partition's seam past them. Each subscriber gets all of its records from the batch in one
    /// queue operation and one wake-up, so its writer sends them as one batched message.
    pub fn dispatch(&self, partition: u32, generation: u64, records: &[Arc<Record>]) {
        let Some(last) = records.last() else { return };
        let now = herald_core::now_ms();
        let mut deliveries = 0u64;
        let mut part = self.parts[partition as usize].lock();
        if part.generation != generation {
            return;
        }
        if records[0].offset > part.next {
            // The reader is gapless; a jump here means a reader that is not (a new adapter).
            tracing::error!(partition, expected = part.next, got = records[0].offset, "a partition reader skipped offsets");
            self.metrics.bus_gaps.increment(1);
            let (from, to) = (part.next, records[0].offset);
            part.gaps.push_back((from, to));
            part.recent.clear();
            part.recent_from = to;
        }
        // Group the batch by channel, keeping order within each channel.
        let mut groups: Vec<(ChannelKey, Vec<Arc<EncodedRecord>>)> = Vec::new();
        // The node's own probe records are not client traffic: they are not counted here.
        let mut probes = 0u64;
        let mut admitted: Vec<&Arc<Record>> = Vec::with_capacity(records.len());
        // Sampled records' delivery spans, by channel group, ended once fanned out.
        let mut traced: Vec<(usize, crate::trace::DeliverSpan)> = Vec::new();
        for r in records {
            if r.offset < part.next {
                continue; // dispatched already
            }
            if copies::is_replica_copy(&part.foreign, r, &self.region) || part.keyed.note(r, now) {
                // A second copy of a record (a replicator or source restart): never twice.
                self.metrics.copies_dropped.increment(1);
                continue;
            }
            admitted.push(r);
            copies::note_origin(&mut part.foreign, r, &self.region);
            if r.account.as_str() == herald_core::PROBE_ACCOUNT {
                probes += 1;
            } else {
                self.metrics.publish_to_fanout.record(now.saturating_sub(r.published_at_ms) as f64 / 1000.0);
            }
            let key = ChannelKey::new(r.account.clone(), r.channel.clone());
            if !part.channels.contains_key(&key) {
                continue;
            }
            let span = if r.trace.is_some() { crate::trace::DeliverSpan::start(r, now, self.region.as_str()) } else { None };
            let enc = self.encode_traced(r, &part.foreign, span.as_ref().and_then(|s| s.context));
            let group = match groups.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    groups.push((key, Vec::new()));
                    groups.len() - 1
                }
            };
            groups[group].1.push(enc);
            if let Some(s) = span {
                traced.push((group, s));
            }
        }
        for (key, encs) in &groups {
            let subs = &part.channels[key];
            for s in subs {
                s.deliver_all(encs);
            }
            if key.account.as_str() != herald_core::PROBE_ACCOUNT {
                deliveries += (subs.len() * encs.len()) as u64;
            }
        }
        part.next = part.next.max(last.offset + 1);
        if self.recent_cap > 0 {
            part.recent.extend(admitted.iter().map(|r| (*r).clone()));
            while part.recent.len() > self.recent_cap {
                let old = part.recent.pop_front().expect("longer than the cap");
                part.recent_from = old.offset + 1;
            }
        } else {
            part.recent_from = part.next;
        }
        let recipients: Vec<usize> = traced.iter().map(|(g, _)| part.channels.get(&groups[*g].0).map_or(0, Vec::len)).collect();
        drop(part);
        for ((_, span), n) in traced.into_iter().zip(recipients) {
            span.finish(n);
        }
        self.metrics.records_in.increment(admitted.len() as u64 - probes);
        self.metrics.deliveries.increment(deliveries);
    }

    /// Sends a join/leave event to the local subscriptions that asked for them.
    pub fn dispatch_presence(&self, event: &PresenceEvent) {
        let partition = partition_for(&event.channel.account, self.partitions());
        let part = self.parts[partition as usize].lock();
        let Some(subs) = part.channels.get(&event.channel) else { return };
        let channel = event.channel.channel.as_str();
        let frame = match event.change {
            PresenceChange::Join => ServerFrame::Join { channel, member: &event.member },
            PresenceChange::Leave => ServerFrame::Leave { channel, member: &event.member },
        }
        .encode();
        for s in subs.iter().filter(|s| s.presence_events) {
            s.outbox.push(OutItem::Frame(frame.clone()));
        }
    }
}
#[cfg(test)]
mod compact_tests {
    use super::*;
    use herald_core::{AccountId, ChannelName, MessageId};
    use herald_protocol::proto::{ProtoReader, encode_server_frame, record_prefix};

    #[test]
    fn a_records_compact_form_reads_back_as_its_json_frame_with_the_same_cursor() {
        let region = |s: &str| RegionName::new(s).unwrap();
        let hub = Hub::new(1, Epoch::new("e7").unwrap(), region("eu"), crate::EngineMetrics::noop(), 0);
        let mut reader = ProtoReader::new();
        let id = herald_protocol::RequestId::Num(1);
        let cursor = hub.cursor_at(0);
        reader.read(&encode_server_frame(&ServerFrame::Subscribed { id: Some(&id), channel: "incidents", cursor: &cursor, recovered: false }, 4));
        // The same channel as subscription 1 on another connection: the shared whole frame.
        let mut first = ProtoReader::new();
        first.read(&encode_server_frame(&ServerFrame::Subscribed { id: Some(&id), channel: "incidents", cursor: &cursor, recovered: false }, 1));
        let record = |offset, origin: &str, origin_offset, id: MessageId| Record {
            partition: 0,
            offset,
            account: AccountId::new("acme").unwrap(),
            channel: ChannelName::new("incidents").unwrap(),
            id,
            published_at_ms: 1_763_996_400_123,
            data: bytes::Bytes::from_static(br#"{"ent":"incident"}"#),
            origin_region: region(origin),
            origin_offset,
            origin_epoch: None,
            trace: None,
        };
        // A local record with no other origin; a replicated one in a stream of three regions.
        let cases = [
            (record(7, "eu", 7, MessageId::generate(5)), VersionVector::new()),
            (record(8, "us", 41, MessageId::from_stored("KABCDEFGHJKMNPQRSTVWXYZ012").unwrap()), [(region("us"), 42), (region("ap"), 3)].into_iter().collect()),
        ];
        for (r, foreign) in cases {
            let enc = hub.encode(&r, &foreign);
            let body = enc.compact_body();
            let wire = [record_prefix(4, body.len()).as_bytes(), body].concat();
            assert_eq!(reader.read(&wire), vec![Ok(enc.frame.clone())]);
            assert!(enc.compact_frame(4).is_none(), "only subscription 1's frame is shared");
            let shared = enc.compact_frame(1).expect("subscription 1's frame");
            assert_eq!(&shared[..], &[record_prefix(1, body.len()).as_bytes(), body].concat()[..]);
            assert_eq!(first.read(shared), vec![Ok(enc.frame.clone())]);
        }
    }
}
