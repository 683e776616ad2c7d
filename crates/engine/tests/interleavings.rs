//! Random interleavings of writers, copies, late-visible records, subscription times and resume
//! cursors, through the real partition consumer, hub, seam and replay (issue 23).
//!
//! The bus here behaves like the Kafka-compatible broker that lost records: several writers
//! reserve offsets, and each record becomes visible to readers at a random later moment, so a
//! reader can see offset `n + 1` before `n` (its high watermark already counts both). Some
//! records are second copies: a replicated record written again by a restarted replicator (same
//! origin and origin offset), a keyed record appended again by a restarted source (same id).
//! Every subscriber, fresh or resuming from a cursor another subscriber received, must get each
//! record after its starting point exactly once, in log order, and nothing else.

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

use herald_core::bus::{Bus, BusError, PartitionBounds, PartitionReader};
use herald_core::{AccountId, Appended, ChannelKey, ChannelName, Cursor, Epoch, MessageId, NewRecord, Record, RegionName};
use herald_engine::outbox::{OutItem, Outbox};
use herald_engine::subscribe;
use herald_engine::{Engine, EngineMetrics, EngineSettings};

/// One partition whose records become visible in any order.
struct LateBus {
    slots: Mutex<Vec<(Arc<Record>, bool)>>,
    changed: watch::Sender<u64>,
}

impl LateBus {
    fn new() -> Arc<Self> {
        Arc::new(Self { slots: Mutex::new(Vec::new()), changed: watch::channel(0).0 })
    }

    /// Reserves the next offset for a record (not visible yet); returns the offset.
    fn reserve(&self, id: MessageId, origin: &RegionName, origin_offset: Option<u64>) -> u64 {
        let mut slots = self.slots.lock();
        let offset = slots.len() as u64;
        let r = Record {
            partition: 0,
            offset,
            account: AccountId::new("acme").unwrap(),
            channel: ChannelName::new("c").unwrap(),
            id,
            published_at_ms: herald_core::now_ms(),
            data: Bytes::from(format!("{{\"o\":{offset}}}")),
            origin_region: origin.clone(),
            origin_offset: origin_offset.unwrap_or(offset),
            origin_epoch: None,
            trace: None,
        };
        slots.push((Arc::new(r), false));
        offset
    }

    fn reveal(&self, offset: u64) {
        self.slots.lock()[offset as usize].1 = true;
        self.changed.send_modify(|n| *n += 1);
    }

    fn hidden(&self) -> Vec<u64> {
        self.slots.lock().iter().filter(|(_, v)| !v).map(|(r, _)| r.offset).collect()
    }

    fn len(&self) -> u64 {
        self.slots.lock().len() as u64
    }
}

struct LateReader {
    bus: Arc<LateBus>,
    position: u64,
}

#[async_trait]
impl PartitionReader for LateReader {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Arc<Record>>, BusError> {
        let mut changed = self.bus.changed.subscribe();
        loop {
            // Like the broker: whatever is visible at or after the position, holes skipped.
            let visible: Vec<Arc<Record>> = self.bus.slots.lock().iter().skip(self.position as usize).filter(|(_, v)| *v).take(max).map(|(r, _)| r.clone()).collect();
            if let Some(last) = visible.last() {
                self.position = last.offset + 1;
                return Ok(visible);
            }
            changed.changed().await.map_err(|_| BusError::Closed)?;
        }
    }
    fn position(&self) -> u64 {
        self.position
    }
    fn seek(&mut self, offset: u64) {
        self.position = offset;
    }
}

struct LateBusHandle(Arc<LateBus>);

#[async_trait]
impl Bus for LateBusHandle {
    fn epoch(&self) -> Epoch {
        Epoch::new("e1").unwrap()
    }
    fn region(&self) -> RegionName {
        RegionName::new("here").unwrap()
    }
    fn partitions(&self) -> u32 {
        1
    }
    async fn append(&self, _records: Vec<NewRecord>) -> Result<Vec<Appended>, BusError> {
        Err(BusError::Unavailable("the test writes through reserve()".into()))
    }
    async fn bounds(&self, _partition: u32) -> Result<PartitionBounds, BusError> {
        // The high watermark counts reserved offsets, visible or not.
        Ok(PartitionBounds { low: 0, next: self.0.len() })
    }
    async fn open(&self, _partition: u32, from: u64) -> Result<Box<dyn PartitionReader>, BusError> {
        Ok(Box::new(LateReader { bus: self.0.clone(), position: from }))
    }
}

/// What a record is, whichever copy of it: a replicated record by origin position, any other by
/// message id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Identity {
    Replicated(u64),
    Id(String),
}

struct Subscriber {
    outbox: Arc<Outbox>,
    /// The first offset it may receive (its cursor's, or the seam it started at).
    start: u64,
    received: Vec<Arc<herald_engine::outbox::EncodedRecord>>,
}

fn drain(s: &mut Subscriber) {
    let mut items = Vec::new();
    s.outbox.take(usize::MAX, &mut items);
    for i in items {
        if let OutItem::Record(r) = i {
            s.received.push(r);
        }
    }
}

async fn join(engine: &Arc<Engine>, since: Option<String>) -> Subscriber {
    let outbox = Outbox::new(64 << 20);
    let key = ChannelKey::new(AccountId::new("acme").unwrap(), ChannelName::new("c").unwrap());
    let cursor = since.as_deref().map(|c| Cursor::parse(c).unwrap());
    let opened = subscribe::open(engine, outbox.clone(), vec![key], cursor.as_ref(), subscribe::Delivery::default()).await.expect("subscribes");
    assert!(since.is_none() || opened.recovered, "a resume inside retention is recovered");
    let start = Cursor::parse(&opened.cursor).unwrap().issuer().1;
    let start = match &cursor {
        Some(c) => c.issuer().1,
        None => start,
    };
    let engine = engine.clone();
    tokio::spawn(async move { subscribe::replay(&engine, opened, None).await });
    Subscriber { outbox, start, received: Vec::new() }
}

async fn one_interleaving(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let bus = LateBus::new();
    let settings = EngineSettings {
        history_cache_records: [0usize, 7, 2000][rng.random_range(0..3)],
        gap_confirm: Duration::from_secs(600), // every hole fills in the end
        ..EngineSettings::default()
    };
    let engine = Engine::new(Arc::new(LateBusHandle(bus.clone())), settings, EngineMetrics::noop());
    let (here, far) = (RegionName::new("here").unwrap(), RegionName::new("far").unwrap());

    // identity of each offset; the offset of each identity's first copy.
    let mut identity: Vec<Identity> = Vec::new();
    let mut first: HashMap<Identity, u64> = HashMap::new();
    let mut far_next = 0u64;
    let mut keyed = 0u64;
    let mut subs = vec![join(&engine, None).await];
    for _ in 0..rng.random_range(40..120) {
        match rng.random_range(0..10) {
            // A writer reserves a record: local, replicated (new or a second copy), keyed (new
            // or a second copy).
            0..=4 => {
                let kind = rng.random_range(0..6);
                let (id, origin, oo, ident) = match kind {
                    0 | 1 => {
                        let id = MessageId::generate(herald_core::now_ms());
                        (id.clone(), here.clone(), None, Identity::Id(id.as_str().to_owned()))
                    }
                    2 | 3 => {
                        let oo = far_next;
                        far_next += 1;
                        (MessageId::from_stored(&format!("F{oo}")).unwrap(), far.clone(), Some(oo), Identity::Replicated(oo))
                    }
                    4 if far_next > 0 => {
                        let oo = rng.random_range(far_next.saturating_sub(5)..far_next);
                        (MessageId::from_stored(&format!("F{oo}")).unwrap(), far.clone(), Some(oo), Identity::Replicated(oo))
                    }
                    _ => {
                        let k = if keyed > 0 && rng.random_bool(0.3) { rng.random_range(keyed.saturating_sub(5)..keyed) } else { keyed += 1; keyed - 1 };
                        let id = format!("K{k:025}");
                        (MessageId::from_stored(&id).unwrap(), here.clone(), None, Identity::Id(id))
                    }
                };
                let offset = bus.reserve(id, &origin, oo);
                first.entry(ident.clone()).or_insert(offset);
                identity.push(ident);
            }
            // A reserved record becomes visible, in any order.
            5..=7 => {
                let hidden = bus.hidden();
                if !hidden.is_empty() {
                    bus.reveal(hidden[rng.random_range(0..hidden.len())]);
                }
            }
            // A client subscribes: fresh, or resuming from a cursor another one received.
            8 => {
                let i = rng.random_range(0..subs.len());
                drain(&mut subs[i]);
                let since = if subs[i].received.is_empty() || rng.random_bool(0.2) {
                    None
                } else {
                    let r = &subs[i].received[rng.random_range(0..subs[i].received.len())];
                    Some(r.cursor.to_string())
                };
                subs.push(join(&engine, since).await);
            }
            _ => tokio::time::sleep(Duration::from_millis(rng.random_range(0..3))).await,
        }
        tokio::task::yield_now().await;
    }
    for o in bus.hidden() {
        bus.reveal(o);
    }
    let total = bus.len();
    for (n, s) in subs.iter_mut().enumerate() {
        // Each record after its start, once, in log order: the first copy of each identity.
        let want: Vec<u64> = (s.start..total).filter(|&o| first[&identity[o as usize]] == o).collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            drain(s);
            if s.received.len() >= want.len() || tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        drain(s);
        let got: Vec<u64> = s.received.iter().map(|r| r.offset).collect();
        assert_eq!(got, want, "seed {seed}, subscriber {n} (start {}): records received vs. each record after its start once", s.start);
    }
    engine.consumers.stop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_gets_each_record_after_its_start_once_whatever_the_interleaving() {
    let seeds: u64 = std::env::var("HERALD_INTERLEAVINGS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    for seed in 0..seeds {
        one_interleaving(seed).await;
    }
}
