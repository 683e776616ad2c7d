//! WebSocket `publish` frames batched into one bus append (docs/protocol.md) while the bus fails
//! under them: appends refused, and appends that landed but whose acknowledgement was lost,
//! each hitting a batch in flight. The publisher retries what was refused with the same
//! idempotency keys; a subscriber that does not dedupe counts every record by its key.

mod common;

use async_trait::async_trait;
use common::*;
use futures_util::SinkExt;
use herald_core::{Appended, Bus, BusError, Epoch, NewRecord, PartitionBounds, PartitionReader, RegionName};
use herald_protocol::Encoding;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The memory bus that, while `faulting`, refuses every fourth append (the second of each
/// four) and appends but reports a failure for another (the fourth): a fault on every other
/// batch, whatever the machine's speed.
struct FaultyBus {
    inner: Arc<dyn Bus>,
    faulting: AtomicBool,
    appends: AtomicU64,
    refused: AtomicU64,
    lost_acks: AtomicU64,
}

#[async_trait]
impl Bus for FaultyBus {
    fn epoch(&self) -> Epoch {
        self.inner.epoch()
    }

    fn region(&self) -> RegionName {
        self.inner.region()
    }

    fn partitions(&self) -> u32 {
        self.inner.partitions()
    }

    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Appended>, BusError> {
        let n = self.appends.fetch_add(1, Ordering::SeqCst);
        match if self.faulting.load(Ordering::SeqCst) { n % 4 } else { 0 } {
            1 => {
                self.refused.fetch_add(1, Ordering::SeqCst);
                Err(BusError::Unavailable("injected: the broker is away".into()))
            }
            3 => {
                let landed = self.inner.append(records).await;
                self.lost_acks.fetch_add(1, Ordering::SeqCst);
                landed.and(Err(BusError::Unavailable("injected: the acknowledgement was lost".into())))
            }
            _ => self.inner.append(records).await,
        }
    }

    async fn bounds(&self, partition: u32) -> Result<PartitionBounds, BusError> {
        self.inner.bounds(partition).await
    }

    async fn open(&self, partition: u32, from: u64) -> Result<Box<dyn PartitionReader>, BusError> {
        self.inner.open(partition, from).await
    }
}

const KEYS: u64 = 300;

async fn batched_publishes_under_bus_faults_land_exactly_once(encoding: Encoding) {
    let slot = Arc::new(std::sync::OnceLock::new());
    let e = TestEdge::start_on(
        {
            let slot = slot.clone();
            move |inner| {
                let bus = Arc::new(FaultyBus { inner, faulting: AtomicBool::new(false), appends: AtomicU64::new(0), refused: AtomicU64::new(0), lost_acks: AtomicU64::new(0) });
                let _ = slot.set(bus.clone());
                bus
            }
        },
        // The per-connection publish limit is not what this test is about.
        |c| c.limits.publish_per_second_per_connection = 1_000_000,
    )
    .await;
    let bus: Arc<FaultyBus> = slot.get().unwrap().clone();
    let token = e.token("acme", "u");
    let mut subscriber = raw_ws_speaking(e.addr, Some(&token), Encoding::Json).await.unwrap();
    send(&mut subscriber, json!({"type":"subscribe","id":"s","channel":"chat:1"})).await;
    expect_type(&mut subscriber, "subscribed").await;

    bus.faulting.store(true, Ordering::SeqCst);
    let mut publisher = raw_ws_speaking(e.addr, Some(&token), encoding).await.unwrap();
    let mut pending: VecDeque<u64> = (0..KEYS).collect();
    let mut acked: HashMap<u64, String> = HashMap::new();
    let (mut next_id, mut retries) = (0u64, 0u64);
    while !pending.is_empty() {
        // Up to 20 publish frames in one WebSocket message: one bus append.
        let batch: Vec<(u64, u64)> = pending.drain(..pending.len().min(20)).map(|k| (next_id_after(&mut next_id), k)).collect();
        let frames: Vec<Value> =
            batch.iter().map(|(id, k)| json!({"type":"publish","id":id,"channel":"chat:1","data":{"k":k},"idempotency_key":format!("k-{k}")})).collect();
        publisher.ws.send(batch_message(encoding, &frames)).await.unwrap();
        let ids: HashMap<u64, u64> = batch.into_iter().collect();
        let mut answered = 0;
        while answered < ids.len() {
            let Next::Frame(f) = publisher.next().await else { panic!("the publisher's connection ended") };
            let Some(k) = f["id"].as_u64().and_then(|id| ids.get(&id)) else { continue };
            answered += 1;
            match (f["type"].as_str(), f["code"].as_str()) {
                (Some("published"), _) => {
                    let cursor = f["cursor"].as_str().unwrap().to_owned();
                    // A retry of a record that had landed is answered with the first one's cursor.
                    assert_eq!(acked.entry(*k).or_insert_with(|| cursor.clone()), &cursor, "key {k}");
                }
                (Some("error"), Some("unavailable")) => {
                    retries += 1;
                    pending.push_back(*k);
                }
                _ => panic!("unexpected answer {f}"),
            }
        }
    }
    bus.faulting.store(false, Ordering::SeqCst);
    assert!(bus.refused.load(Ordering::SeqCst) > 0 && bus.lost_acks.load(Ordering::SeqCst) > 0, "both faults hit batches in flight");
    assert!(retries > 0);

    // Every key delivered exactly once, with its acknowledged cursor, in log order.
    let mut seen: HashMap<u64, u32> = HashMap::new();
    let mut offsets = Vec::new();
    while seen.len() < KEYS as usize {
        let Next::Frame(f) = subscriber.next().await else { panic!("the subscriber's connection ended") };
        if f["type"] != "message" {
            continue;
        }
        let k = f["data"]["k"].as_u64().unwrap();
        *seen.entry(k).or_default() += 1;
        let cursor = f["cursor"].as_str().unwrap();
        assert_eq!(acked.get(&k).map(String::as_str), Some(cursor), "key {k}: delivered at its acknowledged cursor");
        offsets.push(cursor.rsplit('.').next().unwrap().parse::<u64>().unwrap());
    }
    // A duplicate would come right behind: publish a marker and read up to it.
    let marker = e.publish(json!({"account":"acme","channel":"chat:1","data":{"marker":true}})).await;
    assert_eq!(marker.0, 200);
    loop {
        let Next::Frame(f) = subscriber.next().await else { panic!("the subscriber's connection ended") };
        if f["type"] != "message" {
            continue;
        }
        if f["data"]["marker"] == true {
            break;
        }
        *seen.entry(f["data"]["k"].as_u64().unwrap()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "in log order");
}

fn next_id_after(id: &mut u64) -> u64 {
    *id += 1;
    *id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_publishes_under_bus_faults_land_exactly_once_json() {
    batched_publishes_under_bus_faults_land_exactly_once(Encoding::Json).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_publishes_under_bus_faults_land_exactly_once_compact() {
    batched_publishes_under_bus_faults_land_exactly_once(Encoding::Proto).await;
}
