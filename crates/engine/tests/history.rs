//! A channel's history read from the bus in pages: forward and backward pages over a partition
//! that interleaves the channel with others join into exactly the channel's records, in order,
//! without gaps or overlaps.

use bytes::Bytes;
use std::sync::Arc;

use herald_bus_memory::{MemoryBus, MemoryBusConfig};
use herald_core::{AccountId, Bus, ChannelKey, ChannelName, Cursor, NewRecord, RegionName, ReplicaLog};
use herald_engine::history::{self, From, HistoryError};
use herald_engine::{Engine, EngineMetrics, EngineSettings};

fn engine() -> Arc<Engine> {
    let mut bc = MemoryBusConfig::new(RegionName::new("local").unwrap());
    bc.partitions = 1;
    Engine::new(Arc::new(MemoryBus::new(bc)), EngineSettings::default(), EngineMetrics::noop())
}

fn key(account: &str, channel: &str) -> ChannelKey {
    ChannelKey::new(AccountId::new(account).unwrap(), ChannelName::new(channel).unwrap())
}

async fn publish_to(bus: &MemoryBus, channels: &[ChannelKey], n: usize) {
    let recs = (0..n)
        .map(|i| {
            let c = &channels[i % channels.len()];
            NewRecord { account: c.account.clone(), channel: c.channel.clone(), data: Bytes::from(format!("{i}")), idempotency_key: None, published_at_ms: base() + i as u64, trace: None }
        })
        .collect();
    bus.append(recs).await.unwrap();
}

/// Appends `n` records round-robin to the given channels (account, channel, payload `i`), with
/// publish times [`base`] + i ms.
async fn publish(engine: &Engine, channels: &[ChannelKey], n: usize) {
    let recs = (0..n)
        .map(|i| {
            let c = &channels[i % channels.len()];
            NewRecord {
                account: c.account.clone(),
                channel: c.channel.clone(),
                data: Bytes::from(format!("{i}")),
                idempotency_key: None,
                published_at_ms: base() + i as u64,
                trace: None,
            }
        })
        .collect();
    engine.bus.append(recs).await.unwrap();
}

/// Publish times start here: a minute ago, a fixed minute per test process (within retention).
fn base() -> u64 {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| herald_core::now_ms() - 60_000)
}

fn payloads(p: &history::Page) -> Vec<u64> {
    p.records.iter().map(|r| std::str::from_utf8(&r.data).unwrap().parse().unwrap()).collect()
}

fn cursor(s: &str) -> Cursor {
    Cursor::parse(s).unwrap()
}

#[tokio::test]
async fn forward_pages_join_into_exactly_the_channels_records() {
    let engine = engine();
    let (inc, other, elsewhere) = (key("acme", "incident-7"), key("acme", "chat"), key("globex", "incident-7"));
    publish(&engine, &[inc.clone(), other, elsewhere], 900).await;
    let want: Vec<u64> = (0..900).filter(|i| i % 3 == 0).collect();

    let mut got = Vec::new();
    let mut from = From::Since(cursor(&engine.hub.cursor_at(0)));
    let mut pages = 0;
    loop {
        let page = history::read(&engine, &inc, from, 40).await.unwrap();
        assert!(page.records.len() <= 40);
        assert!(page.complete);
        got.extend(payloads(&page));
        pages += 1;
        if !page.more {
            // The last page ends at the partition's end: a subscription from it misses nothing.
            assert_eq!(page.cursor, engine.hub.cursor_at(900));
            break;
        }
        from = From::Since(cursor(&page.cursor));
    }
    assert_eq!(got, want, "forward pages skip or repeat nothing");
    assert_eq!(pages, 300 / 40 + 1);
}

#[tokio::test]
async fn the_latest_page_and_backward_pages_return_the_newest_records_first_page_first() {
    let engine = engine();
    let (inc, other) = (key("acme", "incident-7"), key("acme", "chat"));
    publish(&engine, &[inc.clone(), other.clone(), other], 600).await;
    let all: Vec<u64> = (0..600).filter(|i| i % 3 == 0).collect();

    let latest = history::read(&engine, &inc, From::Latest, 20).await.unwrap();
    assert_eq!(payloads(&latest), all[all.len() - 20..].to_vec(), "the last 20, oldest first");
    assert_eq!(latest.cursor, engine.hub.cursor_at(600));
    assert!(latest.more);

    let mut pages = vec![payloads(&latest)];
    let mut before = latest.before.clone();
    while let Some(b) = before {
        let page = history::read(&engine, &inc, From::Before(cursor(&b)), 20).await.unwrap();
        pages.push(payloads(&page));
        before = if page.more { page.before.clone() } else { None };
    }
    let joined: Vec<u64> = pages.into_iter().rev().flatten().collect();
    assert_eq!(joined, all, "backward pages skip or repeat nothing");
}

#[tokio::test]
async fn since_a_time_starts_at_the_first_record_published_then() {
    let engine = engine();
    let inc = key("acme", "incident-7");
    publish(&engine, std::slice::from_ref(&inc), 100).await;
    let page = history::read(&engine, &inc, From::SinceTime(base() + 50), 10).await.unwrap();
    assert_eq!(payloads(&page), (50..60).collect::<Vec<_>>());
    assert!(page.more);
}

#[tokio::test]
async fn a_second_copy_of_a_replicated_record_is_returned_once() {
    // Records of another region, copied twice the way a replicator that restarted after writing
    // a batch it had not seen acknowledged does: both copies keep the record's id.
    let mut bc = MemoryBusConfig::new(RegionName::new("local").unwrap());
    bc.partitions = 1;
    let bus = Arc::new(MemoryBus::new(bc));
    let engine = Engine::new(bus.clone(), EngineSettings::default(), EngineMetrics::noop());
    let mut far = MemoryBusConfig::new(RegionName::new("far").unwrap());
    far.partitions = 1;
    let origin = MemoryBus::new(far);
    let inc = key("acme", "incident-7");
    publish_to(&origin, std::slice::from_ref(&inc), 5).await;
    let mut reader = origin.open(0, 0).await.unwrap();
    let recs = reader.next_batch(100).await.unwrap();
    let epoch = origin.epoch();
    bus.append_replicated(0, &recs[..3], &epoch).await.unwrap();
    bus.append_replicated(0, &recs, &epoch).await.unwrap();
    let page = history::read(&engine, &inc, From::Latest, 100).await.unwrap();
    assert_eq!(payloads(&page), vec![0, 1, 2, 3, 4], "each record once although 0..3 were copied twice");
}

#[tokio::test]
async fn a_cursor_of_another_region_or_log_is_refused() {
    let engine = engine();
    let inc = key("acme", "incident-7");
    for c in ["c1.other.local.5", "c1.0.elsewhere.5"] {
        let c = cursor(c);
        if c.epoch == *engine.hub.epoch() && c.issuer == *engine.hub.region() {
            continue;
        }
        assert!(matches!(history::read(&engine, &inc, From::Since(c), 10).await, Err(HistoryError::ForeignCursor)));
    }
}
