//! The replay/live seam, driven deterministically: live records that arrive while a resume is
//! replaying history must come after the history, with nothing missed and nothing twice.

mod common;

use bytes::Bytes;
use std::sync::Arc;

use herald_bus_memory::{MemoryBus, MemoryBusConfig};
use herald_config::Config;
use herald_core::{AccountId, ChannelKey, ChannelName, Cursor, NewRecord, RegionName};
use herald_edge::outbox::{OutItem, Outbox};
use herald_edge::subscribe::{self, ReplayEnd};
use herald_edge::{Edge, EdgeDeps, EdgeMetrics};
use herald_presence_memory::MemoryPresence;

fn edge() -> Arc<Edge> {
    edge_with_cache(2000)
}

fn edge_with_cache(history_cache_records: usize) -> Arc<Edge> {
    let mut config = Config::default();
    config.edge.history_cache_records = history_cache_records;
    config.auth.jwt_secret = Some(common::SECRET.into());
    let mut bc = MemoryBusConfig::new(RegionName::new("local").unwrap());
    bc.partitions = 2;
    let deps = EdgeDeps { bus: Arc::new(MemoryBus::new(bc)), presence: Arc::new(MemoryPresence::new()), metrics: EdgeMetrics::new(), dev: None };
    Edge::new(&config, deps).unwrap()
}

/// Appends `n` records to acme/`channel` and dispatches them as the partition consumer would.
async fn publish_and_dispatch(edge: &Edge, channel: &str, n: usize) {
    let account = AccountId::new("acme").unwrap();
    let p = edge.bus.partition_of(&account);
    let from = edge.bus.bounds(p).await.unwrap().next;
    let recs: Vec<_> = (0..n)
        .map(|i| NewRecord {
            account: account.clone(),
            channel: ChannelName::new(channel).unwrap(),
            data: Bytes::from(format!("{i}")),
            idempotency_key: None,
            published_at_ms: herald_core::now_ms(),
        })
        .collect();
    edge.bus.append(recs).await.unwrap();
    let mut r = edge.bus.open(p, from).await.unwrap();
    let batch = r.next_batch(10_000).await.unwrap();
    edge.hub.dispatch(p, GENERATION, &batch);
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
        seam_holds(edge_with_cache(cache)).await;
    }
}

async fn seam_holds(edge: Arc<Edge>) {
    let p = edge.bus.partition_of(&AccountId::new("acme").unwrap());
    edge.consumers.attach_external(p);
    edge.hub.start_partition(p, 0, Vec::new());
    publish_and_dispatch(&edge, "c", 10).await; // offsets 0..10
    let outbox = Outbox::new(1 << 20);
    let since = Cursor::single(edge.bus.epoch(), edge.bus.region(), 5);
    let opened = subscribe::open(&edge, outbox.clone(), vec![key("c")], Some(&since), subscribe::Delivery::default()).await.unwrap();
    assert!(opened.recovered);
    let cache_hits = edge.metrics.render().contains("herald_resumes_from_cache_total 1");
    assert_eq!(cache_hits, edge.config.history_cache_records > 0, "the cache serves the resume only when enabled");
    // Live records arrive before the replay has run: they must wait.
    publish_and_dispatch(&edge, "c", 3).await; // 10..13
    publish_and_dispatch(&edge, "other", 2).await; // 13..15, another channel
    publish_and_dispatch(&edge, "c", 2).await; // 15..17
    assert!(offsets(&outbox).is_empty(), "nothing is delivered before the history");
    let (_sub, end) = subscribe::replay(&edge, opened, None).await;
    assert_eq!(end, ReplayEnd::Live);
    assert_eq!(offsets(&outbox), vec![5, 6, 7, 8, 9, 10, 11, 12, 15, 16]);
    publish_and_dispatch(&edge, "c", 1).await; // 17: live, straight through
    assert_eq!(offsets(&outbox), vec![17]);
}

#[tokio::test]
async fn a_cursor_ahead_of_this_nodes_consumer_skips_what_the_client_already_has() {
    let edge = edge();
    let p = edge.bus.partition_of(&AccountId::new("acme").unwrap());
    edge.consumers.attach_external(p);
    edge.hub.start_partition(p, 0, Vec::new());
    // The client saw offsets up to 7 on another node; this node has dispatched only 0..3.
    publish_and_dispatch(&edge, "c", 3).await;
    let outbox = Outbox::new(1 << 20);
    let since = Cursor::single(edge.bus.epoch(), edge.bus.region(), 8);
    let opened = subscribe::open(&edge, outbox.clone(), vec![key("c")], Some(&since), subscribe::Delivery::default()).await.unwrap();
    let (_sub, _) = subscribe::replay(&edge, opened, None).await;
    publish_and_dispatch(&edge, "c", 7).await; // 3..10
    assert_eq!(offsets(&outbox), vec![8, 9]);
}

#[tokio::test]
async fn a_limited_replay_stops_at_the_limit_and_delivers_nothing_after_the_gap() {
    let edge = edge();
    let p = edge.bus.partition_of(&AccountId::new("acme").unwrap());
    edge.consumers.attach_external(p);
    edge.hub.start_partition(p, 0, Vec::new());
    publish_and_dispatch(&edge, "c", 10).await;
    let outbox = Outbox::new(1 << 20);
    let since = Cursor::single(edge.bus.epoch(), edge.bus.region(), 0);
    let opened = subscribe::open(&edge, outbox.clone(), vec![key("c")], Some(&since), subscribe::Delivery::default()).await.unwrap();
    publish_and_dispatch(&edge, "c", 2).await;
    let (sub, end) = subscribe::replay(&edge, opened, Some(4)).await;
    assert_eq!(end, ReplayEnd::Limited);
    subscribe::close(&edge, &sub);
    assert_eq!(offsets(&outbox), vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn a_batch_from_a_stopped_consumer_is_not_delivered_after_the_partition_restarts() {
    let edge = edge();
    let p = edge.bus.partition_of(&AccountId::new("acme").unwrap());
    edge.consumers.attach_external(p);
    let first = edge.hub.start_partition(p, 0, Vec::new());
    publish_and_dispatch(&edge, "c", 2).await; // generation 1, offsets 0..2
    let mut old = edge.bus.open(p, 0).await.unwrap();
    let stale = old.next_batch(10).await.unwrap();
    // The consumer restarts (generation 2) at the end of the partition; a subscriber joins.
    let second = edge.hub.start_partition(p, 2, Vec::new());
    assert_ne!(first, second);
    let outbox = Outbox::new(1 << 20);
    let opened = subscribe::open(&edge, outbox.clone(), vec![key("c")], None, subscribe::Delivery::default()).await.unwrap();
    let _ = subscribe::replay(&edge, opened, None).await;
    edge.hub.dispatch(p, first, &stale);
    assert!(offsets(&outbox).is_empty(), "the old consumer's batch is ignored");
}
