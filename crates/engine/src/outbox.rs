//! A connection's bounded send queue.
//!
//! The fan-out hub pushes shared, already-encoded frames; the connection's writer takes them in
//! batches and writes each batch in one go. Pushing never waits: a connection whose queue would
//! exceed its byte limit is marked [`CloseReason::Lagged`] and its queue dropped, so a slow
//! reader can never slow the hub or anyone else.
//!
//! A WebSocket's queue ([`Outbox::prioritized`]) has three lanes. Control frames and normal
//! records share the main lane, in order. High-priority records go first: each may overtake
//! queued normal and low records, but never a control frame queued before it (a `subscribed`
//! reply still precedes its channel's records). Low-priority records go when nothing else is
//! queued, and when the queue would overflow they are shed first: their channels are reported
//! to the session ([`Outbox::shed`]), which ends those subscriptions with `lagged` so the client
//! resubscribes from its cursor, and the connection itself survives. Each channel has one
//! priority, so per-channel order is kept. SSE and long-poll carry one cursor for the whole
//! stream and must deliver in stream order: their queues ([`Outbox::new`]) have one lane.

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::Notify;

use herald_core::ChannelName;
use herald_protocol::ErrorCode;

pub use herald_core::Priority;

/// A record encoded once for every subscriber of its channel on this node.
#[derive(Debug)]
pub struct EncodedRecord {
    /// The `message` frame, ending in `\n`.
    pub frame: Bytes,
    /// The record's cursor (SSE uses it as the event id; long-poll returns the last one).
    pub cursor: Box<str>,
    /// The record's offset in its partition.
    pub offset: u64,
    /// Where it was first published, and its offset there (equal to `offset` for local records).
    pub origin: herald_core::RegionName,
    /// Its offset in the origin region's log.
    pub origin_offset: u64,
    /// On a latest-value channel: `channel \0 key`. A queued record with the same key is
    /// replaced by this one.
    pub latest: Option<Box<str>>,
    /// The record's channel (within its account).
    pub channel: ChannelName,
    /// Its channel's priority.
    pub priority: Priority,
    /// What the compact encoding (`herald.v1.proto`) sends of it, made only if a compact
    /// connection sends it.
    pub compact: CompactRecord,
    /// The context of its `herald.deliver` span, for a sampled live record: each socket write
    /// that carries it makes a child span ([`crate::trace::socket_write`]).
    pub trace: Option<herald_core::TraceParent>,
}

/// A record's compact encoding: the body every compact connection shares
/// ([`herald_protocol::proto::encode_record`]), made once, by the first that needs it, right
/// behind the prefix of subscription number 1 (one allocation): a connection whose subscription
/// has number 1 (its first, the common case) writes the whole frame as one shared slice, the
/// others their own prefix and the body.
#[derive(Debug)]
pub struct CompactRecord {
    id: herald_core::MessageId,
    ts_ms: u64,
    data: Bytes,
    /// (the frame for subscription 1, the body: a slice of it).
    encoded: std::sync::OnceLock<(Bytes, Bytes)>,
}

impl CompactRecord {
    /// What the body is made of, besides the record's offset and cursor: its message id,
    /// publish time and payload (shared, not copied).
    pub fn new(id: herald_core::MessageId, ts_ms: u64, data: Bytes) -> Self {
        Self { id, ts_ms, data, encoded: std::sync::OnceLock::new() }
    }
}

impl EncodedRecord {
    fn compact_encoded(&self) -> &(Bytes, Bytes) {
        self.compact.encoded.get_or_init(|| {
            let c = &self.compact;
            let origins = herald_core::Cursor::parse(&self.cursor).map(|c| c.origins).unwrap_or_default();
            let body = herald_protocol::proto::encode_record(self.offset, c.id.as_str(), c.ts_ms, &c.data, &origins);
            let prefix = herald_protocol::proto::record_prefix(1, body.len());
            let mut framed = bytes::BytesMut::with_capacity(prefix.as_bytes().len() + body.len());
            framed.extend_from_slice(prefix.as_bytes());
            framed.extend_from_slice(&body);
            let framed = framed.freeze();
            let body = framed.slice(prefix.as_bytes().len()..);
            (framed, body)
        })
    }

    /// The record's compact body. The other origins' positions come from its cursor, so both
    /// encodings carry the same cursor.
    pub fn compact_body(&self) -> &Bytes {
        &self.compact_encoded().1
    }

    /// The whole compact frame for subscription number `sub`, when it is shared (number 1);
    /// otherwise the connection writes [`herald_protocol::proto::record_prefix`] and
    /// [`EncodedRecord::compact_body`].
    pub fn compact_frame(&self, sub: u32) -> Option<&Bytes> {
        (sub == 1).then(|| &self.compact_encoded().0)
    }
}

/// One queued item.
#[derive(Clone, Debug)]
pub enum OutItem {
    /// A control frame (reply, error, presence event), ending in `\n`.
    Frame(Bytes),
    /// A record.
    Record(Arc<EncodedRecord>),
    /// Bytes already framed for the transport (WebSocket pong and close frames).
    Raw(Bytes),
}

impl OutItem {
    /// Bytes this item occupies in the queue.
    pub fn len(&self) -> usize {
        match self {
            OutItem::Frame(b) | OutItem::Raw(b) => b.len(),
            OutItem::Record(r) => r.frame.len(),
        }
    }

    /// True for an empty item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What [`Outbox::event`] reports.
#[derive(Debug, PartialEq, Eq)]
pub enum OutboxEvent {
    /// These low-priority channels were shed.
    Shed(Vec<ChannelName>),
    /// The connection is closing.
    Closed(CloseReason),
}

/// Why a connection is closing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed (its close frame is already answered).
    ClientClosed,
    /// The client stopped answering heartbeats.
    Timeout,
    /// The queue overflowed.
    Lagged,
    /// The node is draining; the `reconnect` frame is already queued.
    Drain,
    /// A fatal protocol error; the `error` frame is already queued.
    Fatal(ErrorCode),
    /// A backend's order ended the connection; the `disconnect` frame is already queued.
    Ordered(herald_protocol::DisconnectCode),
    /// The peer is gone (write failed); nothing more can be sent.
    PeerGone,
}

struct State {
    /// The main lane: control frames, transport bytes and normal-priority records, in order.
    items: VecDeque<OutItem>,
    /// High-priority records, each with the count of main-lane entries that must be taken
    /// before it (up to the last control frame queued before it).
    high: VecDeque<(u64, Arc<EncodedRecord>)>,
    /// Low-priority records.
    low: VecDeque<Arc<EncodedRecord>>,
    /// Whether records are sorted into lanes by priority (else everything is in `items`).
    lanes: bool,
    /// Main-lane entries pushed, taken, and pushed up to the last control item.
    main_pushed: u64,
    main_taken: u64,
    main_frames: u64,
    /// Low-priority channels shed: their records are dropped until the session has ended the
    /// subscriptions ([`Outbox::unshed`]). `shed_new` are those not yet reported.
    shed: Vec<ChannelName>,
    shed_new: Vec<ChannelName>,
    /// A producer waits for room ([`Outbox::wait_for_room`]).
    room_wanted: bool,
    bytes: usize,
    close: Option<CloseReason>,
    /// Latest-value records still queued: the newest per key.
    latest: std::collections::HashMap<Box<str>, Arc<EncodedRecord>>,
    /// Queued records replaced by a newer one with their key (by address): skipped when taken,
    /// and no longer counted in `bytes`.
    replaced: std::collections::HashSet<usize>,
}

fn addr(r: &Arc<EncodedRecord>) -> usize {
    Arc::as_ptr(r) as usize
}

impl State {
    /// Accounts for a latest-value record about to be queued. When the queue is backed up, a
    /// queued record with the same key is replaced (it will be skipped). Returns bytes freed.
    fn supersede(&mut self, rec: &Arc<EncodedRecord>, backed_up: bool) -> usize {
        let Some(key) = &rec.latest else { return 0 };
        match self.latest.insert(key.clone(), rec.clone()) {
            Some(old) if backed_up => {
                self.replaced.insert(addr(&old));
                old.frame.len()
            }
            _ => 0,
        }
    }

    /// Whether a queued item is still to be sent.
    fn live(&mut self, item: &OutItem) -> bool {
        let OutItem::Record(rec) = item else { return true };
        let Some(key) = &rec.latest else { return true };
        if self.replaced.remove(&addr(rec)) {
            return false;
        }
        if self.latest.get(key).is_some_and(|newest| Arc::ptr_eq(newest, rec)) {
            self.latest.remove(key);
        }
        true
    }

    /// Drops replaced records from the queue once they are at least half of it (and more than
    /// 64), so a stalled reader of a latest-value channel holds no more than about twice its
    /// live records, not every value ever published.
    fn compact(&mut self) {
        if self.replaced.len() > 64 && self.replaced.len() * 2 >= self.len() {
            let replaced = std::mem::take(&mut self.replaced);
            self.items.retain(|it| !matches!(it, OutItem::Record(r) if replaced.contains(&addr(r))));
            self.high.retain(|(_, r)| !replaced.contains(&addr(r)));
            self.low.retain(|r| !replaced.contains(&addr(r)));
        }
    }

    /// Entries queued, all lanes.
    fn len(&self) -> usize {
        self.items.len() + self.high.len() + self.low.len()
    }

    /// Queues an item in its lane.
    fn enqueue(&mut self, item: OutItem) {
        if self.lanes
            && let OutItem::Record(r) = &item
        {
            match r.priority {
                Priority::High => return self.high.push_back((self.main_frames, r.clone())),
                Priority::Low => return self.low.push_back(r.clone()),
                Priority::Normal => {}
            }
        }
        self.main_pushed += 1;
        if !matches!(item, OutItem::Record(_)) {
            self.main_frames = self.main_pushed;
        }
        self.items.push_back(item);
    }

    /// The next item to send, by lane: a high-priority record whose preceding control frames
    /// are sent, else the main lane, else a low-priority record.
    fn dequeue(&mut self) -> Option<OutItem> {
        if let Some((barrier, _)) = self.high.front()
            && (*barrier <= self.main_taken || self.items.is_empty())
        {
            return self.high.pop_front().map(|(_, r)| OutItem::Record(r));
        }
        if let Some(item) = self.items.pop_front() {
            self.main_taken += 1;
            return Some(item);
        }
        self.low.pop_front().map(OutItem::Record)
    }

    /// The size of the item [`State::dequeue`] would return.
    fn next_len(&self) -> Option<usize> {
        match self.high.front() {
            Some((barrier, r)) if *barrier <= self.main_taken || self.items.is_empty() => Some(r.frame.len()),
            _ => self.items.front().map(OutItem::len).or_else(|| self.low.front().map(|r| r.frame.len())),
        }
    }

    /// Sheds every queued low-priority record, remembering its channel. Returns bytes freed.
    fn shed_low(&mut self) -> usize {
        let mut freed = 0;
        for r in std::mem::take(&mut self.low) {
            if let Some(key) = &r.latest
                && self.latest.get(key).is_some_and(|newest| Arc::ptr_eq(newest, &r))
            {
                self.latest.remove(key);
            }
            // A replaced record's bytes were freed when it was replaced.
            if !self.replaced.remove(&addr(&r)) {
                freed += r.frame.len();
            }
            if !self.shed.contains(&r.channel) {
                self.shed.push(r.channel.clone());
                self.shed_new.push(r.channel.clone());
            }
        }
        self.bytes -= freed;
        freed
    }

    /// Whether `item` is a record of a shed channel (dropped: the client resumes it).
    fn is_shed(&self, item: &OutItem) -> bool {
        matches!(item, OutItem::Record(r) if r.priority == Priority::Low && self.shed.contains(&r.channel))
    }

    fn clear(&mut self) {
        self.items = VecDeque::new();
        self.high = VecDeque::new();
        self.low = VecDeque::new();
        self.bytes = 0;
        self.latest = Default::default();
        self.replaced = Default::default();
    }
}

/// The send queue of one connection.
pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the writer (single consumer: `notify_one` keeps a permit, so no wake-up is lost).
    wake: Notify,
    /// Wakes sessions waiting for the close or a shed ([`Outbox::event`]), and producers
    /// waiting for room when the connection closes.
    changed: Notify,
    /// Wakes producers waiting for room (replay) when the writer has taken something.
    room: Notify,
    max_bytes: usize,
    /// Latest-value records replace queued ones with their key once this much is queued.
    conflate_above: usize,
}

impl Outbox {
    /// An empty single-lane queue holding at most `max_bytes`: everything in push order;
    /// latest-value records are replaced once a quarter of it is queued.
    pub fn new(max_bytes: usize) -> Arc<Self> {
        Self::build(max_bytes, max_bytes / 4, false)
    }

    /// An empty single-lane queue (SSE) holding at most `max_bytes`; latest-value records are
    /// replaced once `conflate_above` bytes are queued.
    pub fn stream(max_bytes: usize, conflate_above: usize) -> Arc<Self> {
        Self::build(max_bytes, conflate_above, false)
    }

    /// An empty queue holding at most `max_bytes`, with lanes by channel priority (WebSocket);
    /// latest-value records are replaced once `conflate_above` bytes are queued.
    pub fn prioritized(max_bytes: usize, conflate_above: usize) -> Arc<Self> {
        Self::build(max_bytes, conflate_above, true)
    }

    fn build(max_bytes: usize, conflate_above: usize, lanes: bool) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                high: VecDeque::new(),
                low: VecDeque::new(),
                lanes,
                main_pushed: 0,
                main_taken: 0,
                main_frames: 0,
                shed: Vec::new(),
                shed_new: Vec::new(),
                room_wanted: false,
                bytes: 0,
                close: None,
                latest: Default::default(),
                replaced: Default::default(),
            }),
            wake: Notify::new(),
            changed: Notify::new(),
            room: Notify::new(),
            max_bytes,
            conflate_above,
        })
    }

    /// Queues `item`. Returns false when the connection is closing (including when this push
    /// overflowed the queue and marked it lagged).
    pub fn push(&self, item: OutItem) -> bool {
        let mut s = self.state.lock();
        if s.close.is_some() {
            return false;
        }
        if s.is_shed(&item) {
            return true;
        }
        let len = item.len();
        let backed_up = s.bytes >= self.conflate_above;
        let freed = match &item {
            OutItem::Record(rec) if rec.latest.is_some() => s.supersede(rec, backed_up),
            _ => 0,
        };
        s.bytes -= freed;
        if s.bytes + len > self.max_bytes && s.lanes && !s.low.is_empty() {
            s.shed_low();
            self.changed.notify_waiters();
            if s.is_shed(&item) {
                return true;
            }
        }
        if s.bytes + len > self.max_bytes {
            self.overflow(s);
            return false;
        }
        let was_empty = s.len() == 0;
        s.enqueue(item);
        s.bytes += len;
        if freed > 0 {
            s.compact();
        }
        drop(s);
        if was_empty {
            self.wake.notify_one();
        }
        true
    }

    /// The queue would exceed its limit: the connection is lagged and its queue dropped.
    fn overflow(&self, mut s: parking_lot::MutexGuard<'_, State>) {
        s.close = Some(CloseReason::Lagged);
        s.clear();
        drop(s);
        self.wake.notify_one();
        self.changed.notify_waiters();
        self.room.notify_waiters();
    }

    /// Queues several records at once, with one lock and one wake-up.
    pub fn push_records(&self, recs: &[Arc<EncodedRecord>]) -> bool {
        let mut s = self.state.lock();
        if s.close.is_some() {
            return false;
        }
        let was_empty = s.len() == 0;
        // Latest-value records replace queued ones only when the queue is backed up
        // (`conflate_above` queued before this batch): a reader that keeps up gets every record.
        let backed_up = s.bytes >= self.conflate_above;
        // The main lane holds most records: room for the batch at once (the queue is given back
        // when emptied, so it would otherwise grow a push at a time for every batch).
        s.items.reserve(recs.len());
        for r in recs {
            if r.priority == Priority::Low && s.shed.contains(&r.channel) {
                continue;
            }
            // One at a time: a record may replace one queued earlier in this same batch.
            let freed = if r.latest.is_some() { s.supersede(r, backed_up) } else { 0 };
            s.bytes = s.bytes - freed + r.frame.len();
            s.enqueue(OutItem::Record(r.clone()));
        }
        if s.bytes > self.max_bytes && s.lanes && !s.low.is_empty() {
            s.shed_low();
            self.changed.notify_waiters();
        }
        if s.bytes > self.max_bytes {
            self.overflow(s);
            return false;
        }
        s.compact();
        drop(s);
        if was_empty {
            self.wake.notify_one();
        }
        true
    }

    /// Marks the connection closing for `reason`, unless it already is. Items already queued are
    /// still written, except after [`CloseReason::Lagged`] and [`CloseReason::PeerGone`].
    pub fn close(&self, reason: CloseReason) {
        let mut s = self.state.lock();
        if s.close.is_none() {
            s.close = Some(reason);
            if matches!(reason, CloseReason::Lagged | CloseReason::PeerGone) {
                s.clear();
            }
        }
        drop(s);
        self.wake.notify_one();
        self.changed.notify_waiters();
        self.room.notify_waiters();
    }

    /// The close reason, once closing.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.state.lock().close
    }

    /// Bytes queued.
    pub fn queued_bytes(&self) -> usize {
        self.state.lock().bytes
    }

    /// Takes queued items totalling at most about `max_bytes` (at least one item), and the close
    /// reason. An empty result with no reason means: nothing to do yet.
    pub fn take(&self, max_bytes: usize, into: &mut Vec<OutItem>) -> Option<CloseReason> {
        let mut s = self.state.lock();
        let mut taken = 0;
        // Room for everything queued at once, rather than growing the batch a push at a time.
        into.reserve(s.len().min(512));
        while let Some(len) = s.next_len() {
            if taken > 0 && taken + len > max_bytes {
                break;
            }
            let item = s.dequeue().expect("an item is next");
            if !s.live(&item) {
                // Replaced by a newer record with its key; its bytes were freed then.
                continue;
            }
            taken += len;
            into.push(item);
        }
        s.bytes -= taken;
        if s.len() == 0 && s.items.capacity() + s.high.capacity() + s.low.capacity() > 0 {
            // Give back the memory: an idle connection holds no queue allocation.
            s.items = VecDeque::new();
            s.high = VecDeque::new();
            s.low = VecDeque::new();
        }
        let close = s.close;
        // Only a replay waiting for room is woken: the writer takes a batch per write, and waking
        // the session each time was measurable (tokio's notify_waiters in the fan-out profile).
        let wake_room = taken > 0 && std::mem::take(&mut s.room_wanted);
        drop(s);
        if wake_room {
            self.room.notify_waiters();
        }
        close
    }

    /// Waits until the writer has something to do.
    pub async fn ready(&self) {
        self.wake.notified().await;
    }

    /// Waits until the queue holds less than `below` bytes or the connection is closing.
    /// Returns false when closing.
    pub async fn wait_for_room(&self, below: usize) -> bool {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.state.lock();
                if s.close.is_some() {
                    return false;
                }
                s.room_wanted = true;
                if s.bytes < below {
                    return true;
                }
            }
            notified.await;
        }
    }

    /// Waits until the connection is closing, or low-priority channels were shed (the queue
    /// would otherwise have overflowed). Shed channels' records are dropped until
    /// [`Outbox::unshed`]. One future for both: every idle WebSocket connection holds it.
    pub async fn event(&self) -> OutboxEvent {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.state.lock();
                if let Some(r) = s.close {
                    return OutboxEvent::Closed(r);
                }
                if !s.shed_new.is_empty() {
                    return OutboxEvent::Shed(std::mem::take(&mut s.shed_new));
                }
            }
            notified.await;
        }
    }

    /// The session has ended the shed subscription of `channel`: its records queue again (a
    /// new subscription's).
    pub fn unshed(&self, channel: &ChannelName) {
        self.state.lock().shed.retain(|c| c != channel);
    }

    /// Waits until the connection is closing, and returns why.
    pub async fn closed(&self) -> CloseReason {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = self.close_reason() {
                return r;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflowing_the_queue_marks_lagged_and_drops_what_was_queued() {
        let o = Outbox::new(10);
        assert!(o.push(OutItem::Frame(Bytes::from_static(b"12345"))));
        assert!(o.push(OutItem::Frame(Bytes::from_static(b"12345"))));
        assert!(!o.push(OutItem::Frame(Bytes::from_static(b"1"))));
        let mut v = Vec::new();
        assert_eq!(o.take(100, &mut v), Some(CloseReason::Lagged));
        assert!(v.is_empty());
        assert!(!o.push(OutItem::Frame(Bytes::from_static(b"1"))), "a closed queue takes nothing");
    }

    #[test]
    fn take_respects_the_batch_size_but_always_makes_progress() {
        let o = Outbox::new(1000);
        for _ in 0..4 {
            o.push(OutItem::Frame(Bytes::from_static(b"0123456789")));
        }
        let mut v = Vec::new();
        o.take(25, &mut v);
        assert_eq!(v.len(), 2);
        v.clear();
        o.take(1, &mut v);
        assert_eq!(v.len(), 1, "an item larger than the batch still goes");
        assert_eq!(o.queued_bytes(), 10);
    }

    fn keyed(offset: u64, key: Option<&str>) -> Arc<EncodedRecord> {
        Arc::new(EncodedRecord {
            frame: Bytes::from(format!("{offset:09}\n")),
            cursor: "c".into(),
            offset,
            origin: herald_core::RegionName::new("r").unwrap(),
            origin_offset: offset,
            latest: key.map(Into::into),
            channel: ChannelName::new("c").unwrap(),
            priority: Priority::Normal,
            compact: CompactRecord::new(herald_core::MessageId::from_stored("F1").unwrap(), 1, Bytes::from_static(b"1")),
            trace: None,
        })
    }

    #[test]
    fn a_queued_latest_value_record_is_replaced_by_a_newer_one_with_its_key() {
        // Backed up (a quarter full) from the first 10-byte record on.
        let o = Outbox::new(40);
        assert!(o.push(OutItem::Record(keyed(1, Some("bus\0v1")))));
        assert!(o.push_records(&[keyed(2, Some("bus\0v2")), keyed(3, None), keyed(4, Some("bus\0v1"))]));
        assert!(o.push(OutItem::Record(keyed(5, Some("bus\0v2")))));
        // Three live records of 10 bytes each: v1@4, the keyless 3, v2@5.
        assert_eq!(o.queued_bytes(), 30);
        let mut out = Vec::new();
        o.take(1 << 20, &mut out);
        let offsets: Vec<u64> = out.iter().map(|i| if let OutItem::Record(r) = i { r.offset } else { 0 }).collect();
        assert_eq!(offsets, [3, 4, 5]);
        assert_eq!(o.queued_bytes(), 0);
        // Once sent, a key starts afresh: nothing is replaced that was not queued.
        assert!(o.push(OutItem::Record(keyed(6, Some("bus\0v1")))));
        out.clear();
        o.take(1 << 20, &mut out);
        assert_eq!(out.len(), 1);
        // A stalled reader holds about its live records, not every value: replaced ones are
        // dropped from the queue once they are half of it.
        let stalled = Outbox::new(1000);
        for i in 0..1000u64 {
            assert!(stalled.push(OutItem::Record(keyed(100 + i, Some(["bus\0a", "bus\0b", "bus\0c"][i as usize % 3])))));
        }
        assert!(stalled.state.lock().items.len() < 200, "{}", stalled.state.lock().items.len());
        out.clear();
        stalled.take(1 << 20, &mut out);
        let offsets: Vec<u64> = out.iter().map(|i| if let OutItem::Record(r) = i { r.offset } else { 0 }).collect();
        // What was queued before the queue backed up is sent as it was; then only the newest.
        assert!(offsets.len() < 30, "{offsets:?}");
        assert_eq!(offsets[offsets.len() - 3..], [1097, 1098, 1099]);
        // A queue that is not backed up replaces nothing: a reader that keeps up gets all.
        let roomy = Outbox::new(1 << 20);
        assert!(roomy.push_records(&[keyed(7, Some("bus\0v1")), keyed(8, Some("bus\0v1"))]));
        out.clear();
        roomy.take(1 << 20, &mut out);
        assert_eq!(out.len(), 2);
    }

    fn prio(offset: u64, channel: &str, priority: Priority) -> OutItem {
        let mut r = Arc::try_unwrap(keyed(offset, None)).unwrap();
        r.channel = ChannelName::new(channel).unwrap();
        r.priority = priority;
        OutItem::Record(Arc::new(r))
    }

    fn order(items: &[OutItem]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                OutItem::Record(r) => r.offset.to_string(),
                OutItem::Frame(b) | OutItem::Raw(b) => String::from_utf8_lossy(b).into_owned(),
            })
            .collect()
    }

    #[test]
    fn high_priority_records_overtake_queued_records_but_never_a_control_frame_queued_before_them() {
        let o = Outbox::prioritized(1 << 20, 1 << 18);
        o.push(prio(1, "low", Priority::Low));
        o.push(prio(2, "normal", Priority::Normal));
        o.push(OutItem::Frame(Bytes::from_static(b"F")));
        o.push(prio(3, "normal", Priority::Normal));
        o.push(prio(4, "low", Priority::Low));
        o.push(prio(5, "high", Priority::High));
        o.push(OutItem::Frame(Bytes::from_static(b"G")));
        o.push(prio(6, "high", Priority::High));
        let mut out = Vec::new();
        o.take(1 << 20, &mut out);
        // 5 waits for F (queued before it) but overtakes 3; 6 waits for G, which keeps its
        // place after 3 in the main lane; low-priority records go last.
        assert_eq!(order(&out), ["2", "F", "5", "3", "G", "6", "1", "4"]);
        assert_eq!(o.queued_bytes(), 0);
        // A single-lane queue (SSE, long-poll) keeps push order whatever the priority.
        let fifo = Outbox::new(1 << 20);
        fifo.push(prio(1, "low", Priority::Low));
        fifo.push(prio(2, "high", Priority::High));
        out.clear();
        fifo.take(1 << 20, &mut out);
        assert_eq!(order(&out), ["1", "2"]);
    }

    #[test]
    fn an_overflow_sheds_low_priority_channels_before_it_cuts_the_connection() {
        // Records are 10 bytes: room for 5.
        let o = Outbox::prioritized(50, 12);
        assert!(o.push_records(&[prio(1, "tel", Priority::Low), prio(2, "tel", Priority::Low), prio(3, "gps", Priority::Low)].map(|i| match i {
            OutItem::Record(r) => r,
            _ => unreachable!(),
        })));
        assert!(o.push(prio(4, "inc", Priority::High)));
        assert!(o.push(prio(5, "c", Priority::Normal)));
        // Full: the next record sheds the low lane instead of lagging the connection.
        assert!(o.push(prio(6, "c", Priority::Normal)));
        assert_eq!(o.close_reason(), None);
        assert_eq!(o.queued_bytes(), 30);
        let Some(OutboxEvent::Shed(shed)) = futures_util::FutureExt::now_or_never(o.event()) else { panic!("shed channels are reported") };
        assert_eq!(shed.iter().map(|c| c.as_str()).collect::<Vec<_>>(), ["tel", "gps"]);
        // Until the session has ended those subscriptions, their records are dropped.
        assert!(o.push(prio(7, "tel", Priority::Low)));
        o.unshed(&ChannelName::new("tel").unwrap());
        assert!(o.push(prio(8, "tel", Priority::Low)));
        assert!(o.push(prio(9, "gps", Priority::Low)));
        let mut out = Vec::new();
        o.take(1 << 20, &mut out);
        assert_eq!(order(&out), ["4", "5", "6", "8"]);
        // With nothing low-priority left to shed, an overflow cuts the connection as before.
        let full = Outbox::prioritized(20, 5);
        assert!(full.push(prio(1, "c", Priority::Normal)));
        assert!(full.push(prio(2, "inc", Priority::High)));
        assert!(!full.push(prio(3, "c", Priority::Normal)));
        assert_eq!(full.close_reason(), Some(CloseReason::Lagged));
    }

    #[test]
    fn a_drain_close_keeps_queued_frames_for_the_writer() {
        let o = Outbox::new(100);
        o.push(OutItem::Frame(Bytes::from_static(b"reconnect")));
        o.close(CloseReason::Drain);
        let mut v = Vec::new();
        assert_eq!(o.take(100, &mut v), Some(CloseReason::Drain));
        assert_eq!(v.len(), 1);
    }
}
