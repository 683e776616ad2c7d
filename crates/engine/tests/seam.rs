//! The replay/live seam, driven deterministically: live records that arrive while a resume is
//! replaying history must come after the history, with nothing missed and nothing twice.

use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use herald_bus_memory::{MemoryBus, MemoryBusConfig};
use herald_core::{AccountId, ChannelKey, ChannelName, Cursor, NewRecord, RegionName, VersionVector};
use herald_engine::outbox::{OutItem, Outbox};
use herald_engine::subscribe::{self, ReplayEnd};
use herald_engine::{Engine, EngineMetrics, EngineSettings};

/// A counter the test can read.
struct Count(AtomicU64);

impl metrics::CounterFn for Count {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

fn engine() -> Arc<Engine> {
    engine_with_cache(2000).0
}

/// An engine on a memory bus with 2 partitions, and its resumes-from-cache count.
fn engine_with_cache(history_cache_records: usize) -> (Arc<Engine>, Arc<Count>) {
    let mut bc = MemoryBusConfig::new(RegionName::new("local").unwrap());
    bc.partitions = 2;
    let cache_hits = Arc::new(Count(AtomicU64::new(0)));
    let metrics = EngineMetrics { resumes_from_cache: metrics::Counter::from_arc(cache_hits.clone()), ..EngineMetrics::noop() };
    let settings = EngineSettings { history_cache_records, ..EngineSettings::default() };
    (Engine::new(Arc::new(MemoryBus::new(bc)), settings, metrics), cache_hits)
}

/// Appends `n` records to acme/`channel` and dispatches them as the partition consumer would.
async fn publish_and_dispatch(engine: &Engine, channel: &str, n: usize) {
    let account = AccountId::new("acme").unwrap();
    let p = engine.bus.partition_of(&account);
    let from = engine.bus.bounds(p).await.unwrap().next;
    let recs: Vec<_> = (0..n)
        .map(|i| NewRecord {
            account: account.clone(),
            channel: ChannelName::new(channel).unwrap(),
            data: Bytes::from(format!("{i}")),
            idempotency_key: None,
            published_at_ms: herald_core::now_ms(),
            trace: None,
        })
        .collect();
    engine.bus.append(recs).await.unwrap();
    let mut r = engine.bus.open(p, from).await.unwrap();
    let batch = r.next_batch(10_000).await.unwrap();
    engine.hub.dispatch(p, GENERATION, &batch);
}

/// The tests start each partition once, so its generation is 1.
const GENERATION: u64 = 1;

fn offsets(outbox: &Outbox) -> Vec<u64> {
    let mut items = Vec::new();
    outbox.take(usize::MAX, &mut items);
    items.iter().filter_map(|i| if let OutItem::Record(r) = i { Some(r.offset) } else { None }).collect()
}

fn key(channel: &str) -> ChannelKey {
    ChannelKey::new(AccountId::new("acme").unwrap(), ChannelName::new(channel).unwrap())
}

#[tokio::test]
async fn live_records_arriving_during_a_replay_follow_the_history_exactly_once() {
    // Once with the history served from the hub's cache, once read from the bus.
    for cache in [2000, 0] {
        let (engine, cache_hits) = engine_with_cache(cache);
        seam_holds(engine, cache_hits).await;
    }
}

async fn seam_holds(engine: Arc<Engine>, cache_hits: Arc<Count>) {
    let p = engine.bus.partition_of(&AccountId::new("acme").unwrap());
    engine.consumers.attach_external(p);
    engine.hub.start_partition(p, 0, VersionVector::new());
    publish_and_dispatch(&engine, "c", 10).await; // offsets 0..10
    let outbox = Outbox::new(1 << 20);
    let since = Cursor::single(engine.bus.epoch(), engine.bus.region(), 5);
    let opened = subscribe::open(&engine, outbox.clone(), vec![key("c")], Some(&since), subscribe::Delivery::default()).await.unwrap();
    assert!(opened.recovered);
    let served_from_cache = cache_hits.0.load(Ordering::Relaxed) == 1;
    assert_eq!(served_from_cache, engine.settings.history_cache_records > 0, "the cache serves the resume only when enabled");
    // Live records arrive before the replay has run: they must wait.
    publish_and_dispatch(&engine, "c", 3).await; // 10..13
    publish_and_dispatch(&engine, "other", 2).await; // 13..15, another channel
    publish_and_dispatch(&engine, "c", 2).await; // 15..17
    assert!(offsets(&outbox).is_empty(), "nothing is delivered before the history");
    let (_sub, end) = subscribe::replay(&engine, opened, None).await;
    assert_eq!(end, ReplayEnd::Live);
    assert_eq!(offsets(&outbox), vec![5, 6, 7, 8, 9, 10, 11, 12, 15, 16]);
    publish_and_dispatch(&engine, "c", 1).await; // 17: live, straight through
    assert_eq!(offsets(&outbox), vec![17]);
}

#[tokio::test]
async fn a_cursor_ahead_of_this_nodes_consumer_skips_what_the_client_already_has() {
    let engine = engine();
    let p = engine.bus.partition_of(&AccountId::new("acme").unwrap());
    engine.consumers.attach_external(p);
    engine.hub.start_partition(p, 0, VersionVector::new());
    // The client saw offsets up to 7 on another node; this node has dispatched only 0..3.
    publish_and_dispatch(&engine, "c", 3).await;
    let outbox = Outbox::new(1 << 20);
    let since = Cursor::single(engine.bus.epoch(), engine.bus.region(), 8);
    let opened = subscribe::open(&engine, outbox.clone(), vec![key("c")], Some(&since), subscribe::Delivery::default()).await.unwrap();
    let (_sub, _) = subscribe::replay(&engine, opened, None).await;
    publish_and_dispatch(&engine, "c", 7).await; // 3..10
    assert_eq!(offsets(&outbox), vec![8, 9]);
}

#[tokio::test]
async fn a_limited_replay_stops_at_the_limit_and_delivers_nothing_after_the_gap() {
    let engine = engine();
    let p = engine.bus.partition_of(&AccountId::new("acme").unwrap());
    engine.consumers.attach_external(p);
    engine.hub.start_partition(p, 0, VersionVector::new());
    publish_and_dispatch(&engine, "c", 10).await;
    let outbox = Outbox::new(1 << 20);
    let since = Cursor::single(engine.bus.epoch(), engine.bus.region(), 0);
    let opened = subscribe::open(&engine, outbox.clone(), vec![key("c")], Some(&since), subscribe::Delivery::default()).await.unwrap();
    publish_and_dispatch(&engine, "c", 2).await;
    let (sub, end) = subscribe::replay(&engine, opened, Some(4)).await;
    assert_eq!(end, ReplayEnd::Limited);
    subscribe::close(&engine, &sub);
    assert_eq!(offsets(&outbox), vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn a_batch_from_a_stopped_consumer_is_not_delivered_after_the_partition_restarts() {
    let engine = engine();
    let p = engine.bus.partition_of(&AccountId::new("acme").unwrap());
    engine.consumers.attach_external(p);
    let first = engine.hub.start_partition(p, 0, VersionVector::new());
    publish_and_dispatch(&engine, "c", 2).await; // generation 1, offsets 0..2
    let mut old = engine.bus.open(p, 0).await.unwrap();
    let stale = old.next_batch(10).await.unwrap();
    // The consumer restarts (generation 2) at the end of the partition; a subscriber joins.
    let second = engine.hub.start_partition(p, 2, VersionVector::new());
    assert_ne!(first, second);
    let outbox = Outbox::new(1 << 20);
    let opened = subscribe::open(&engine, outbox.clone(), vec![key("c")], None, subscribe::Delivery::default()).await.unwrap();
    let _ = subscribe::replay(&engine, opened, None).await;
    engine.hub.dispatch(p, first, &stale);
    assert!(offsets(&outbox).is_empty(), "the old consumer's batch is ignored");
}
