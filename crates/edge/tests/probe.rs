//! The probe turns a node unready when its records stop coming back, also when publishing still
//! works and only the partition consumer is stuck (issue 21), and ready again when they flow.

mod common;

use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use herald_bus_memory::{MemoryBus, MemoryBusConfig};
use herald_config::Config;
use herald_core::bus::{Bus, BusError, PartitionBounds, PartitionReader};
use herald_core::{Appended, Epoch, NewRecord, Record, RegionName};
use herald_edge::{Edge, EdgeDeps, EdgeMetrics};
use herald_presence_memory::MemoryPresence;
use tokio_util::sync::CancellationToken;

/// A memory bus whose readers stop handing out records while `stuck` is set: appends still work.
struct StuckReaders {
    inner: MemoryBus,
    stuck: Arc<AtomicBool>,
}

struct StuckReader {
    inner: Box<dyn PartitionReader>,
    stuck: Arc<AtomicBool>,
}

#[async_trait]
impl PartitionReader for StuckReader {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Arc<Record>>, BusError> {
        let batch = self.inner.next_batch(max).await?;
        // A consumer that stops reading: it holds what it got until it is unstuck.
        while self.stuck.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(batch)
    }
    fn position(&self) -> u64 {
        self.inner.position()
    }
    fn seek(&mut self, offset: u64) {
        self.inner.seek(offset)
    }
}

#[async_trait]
impl Bus for StuckReaders {
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
        self.inner.append(records).await
    }
    async fn bounds(&self, partition: u32) -> Result<PartitionBounds, BusError> {
        self.inner.bounds(partition).await
    }
    async fn open(&self, partition: u32, from: u64) -> Result<Box<dyn PartitionReader>, BusError> {
        Ok(Box::new(StuckReader { inner: self.inner.open(partition, from).await?, stuck: self.stuck.clone() }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_consumer_makes_the_node_unready_within_the_bound_while_publishing_works() {
    let stuck = Arc::new(AtomicBool::new(false));
    let mut config = Config::default();
    config.auth.jwt_secret = Some(common::SECRET.into());
    config.auth.admin_api_key = Some(common::ADMIN_KEY.into());
    config.edge.probe_interval_ms = 200;
    config.edge.probe_stall_ms = 1500;
    config.validate().unwrap();
    let bus = StuckReaders { inner: MemoryBus::new(MemoryBusConfig::new(RegionName::new("local").unwrap())), stuck: stuck.clone() };
    let deps = EdgeDeps { bus: Arc::new(bus), presence: Arc::new(MemoryPresence::new()), metrics: EdgeMetrics::new(), dev: None, devices: None, orders: Arc::new(herald_presence_memory::MemoryOrders::new()) };
    let edge: Arc<Edge> = Edge::new(&config, deps).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stop = CancellationToken::new();
    tokio::spawn({
        let (edge, stop) = (edge.clone(), stop.clone());
        async move { herald_edge::serve(listener, edge, stop).await.unwrap() }
    });
    let deadline = Instant::now() + common::PATIENCE;
    while !edge.is_ready() {
        assert!(Instant::now() < deadline, "the node never became ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stuck.store(true, Ordering::Release);
    let since = Instant::now();
    while edge.is_ready() {
        assert!(since.elapsed() < common::PATIENCE, "a stuck consumer never made the node unready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = since.elapsed();
    // Bound: probe_stall_ms + probe_interval_ms after the first unanswered probe, sent within
    // one interval of the consumer sticking: 1,900 ms. Asserted below twice probe_stall_ms.
    assert!(took < Duration::from_millis(3000), "unready {} ms after the consumer stuck", took.as_millis());
    // Publishing still works meanwhile: the bus takes writes.
    let a = edge.bus.append(vec![NewRecord {
        account: herald_core::AccountId::new("acme").unwrap(),
        channel: herald_core::ChannelName::new("c").unwrap(),
        data: bytes::Bytes::from_static(b"{}"),
        idempotency_key: None,
        published_at_ms: herald_core::now_ms(),
        trace: None,
    }])
    .await;
    assert!(a.is_ok(), "appends work while only the consumer is stuck");
    stuck.store(false, Ordering::Release);
    let since = Instant::now();
    while !edge.is_ready() {
        assert!(since.elapsed() < common::PATIENCE, "the node never became ready again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
}
