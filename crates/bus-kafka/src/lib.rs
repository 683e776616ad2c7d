//! The Kafka [`Bus`]: Herald's production log, on Apache Kafka or any Kafka-compatible broker
//! (Redpanda, tansu, managed Kafka), through rdkafka with its bundled librdkafka.
//!
//! # Layout
//! - [`KafkaBus`] and [`KafkaBusConfig`]: connecting, creating the topic, the epoch, appending.
//! - `envelope` (private): how a record maps onto a Kafka message and back (versioned headers).
//! - `reader` (private): a [`PartitionReader`] on one partition, by explicit assignment (no
//!   consumer group, so it reads at once and from any offset).
//! - `presence_feed`: [`KafkaPresenceFeed`], presence changes and connection events as records of
//!   `<topic>.presence` ([`record_value`] is their JSON), for backends and `herald webhooks`.
//!
//! # Topic layout
//! One topic per region (`herald.<region>` by default). The Kafka key is the account, and Herald
//! picks the partition itself with Kafka's own murmur2 partitioner, so an account's records share
//! a partition (and keep their order) whoever produces them. The value is the JSON payload; the
//! channel, message id, publish time and origin region/offset ride in `herald-*` headers (format
//! version in `herald-v`).
//!
//! # Epoch
//! Offsets only mean something within one life of a topic. The epoch is kept in a compacted
//! one-partition topic `<topic>.epoch`: the first node that finds it empty writes a random epoch
//! (each under its own key, so compaction removes none), and every node uses the **first** record,
//! so all agree. Recreating the records topic means deleting `<topic>.epoch` too (docs/kafka.md).
//!
//! # Idempotency
//! A keyed record gets a message id derived from `(account, key)`. A node remembers the keyed
//! ids appended within the window (a `herald_core::IdempotencyWindow`) and answers repeats with
//! the first record; the first time it
//! appends a keyed record to a partition it reads the partition's tail back (the last 20,000
//! records within the window), so a restarted node, or a source that re-reads records after a
//! crash, does not append them again. Two nodes appending one key at the same moment can still
//! both write it: the edges drop the second copy by id before fan-out (`herald_engine::copies`).
//!
//! # Replication
//! [`KafkaBus`] is a `herald_core::ReplicaLog`: copies from other regions carry their origin in
//! `herald-or`/`herald-oo`/`herald-oe` headers, and the read-back of the last copy reads the
//! partition's tail through the gapless reader, so it sees every acknowledged copy.
//!
//! # Gaps
//! Readers are wrapped in `herald_core::GaplessReader`: a broker may show a later write before an
//! earlier one, and a reader must never move past the earlier one (issue 23, docs/kafka.md).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod envelope;
mod reader;
mod presence_feed;
pub use presence_feed::{KafkaPresenceFeed, create_topic_if_missing, record_value};
#[doc(hidden)]
pub mod testing;

use async_trait::async_trait;
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use herald_core::bus::{Bus, BusError, PartitionBounds, PartitionReader};
use herald_core::replica::scan_last_origin_offset;
use herald_core::{GaplessReader, Appended, Epoch, IdempotencyWindow, MessageId, NewRecord, Record, RegionName, ReplicaLog, now_ms};

/// Settings of a Kafka bus.
#[derive(Clone, Debug)]
pub struct KafkaBusConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// librdkafka properties for every client of this cluster (TLS, SASL, tuning), secrets
    /// already read; from `[kafka]` (herald-config), which refuses the ones Herald owns.
    pub properties: Vec<(String, String)>,
    /// The records topic of this region.
    pub topic: String,
    /// The region whose records this topic holds.
    pub region: RegionName,
    /// Partitions to create the topic with (an existing topic keeps its own count).
    pub partitions: u32,
    /// Replication factor when creating topics.
    pub replication: i32,
    /// How long a node remembers idempotency keys.
    pub idempotency_window: Duration,
    /// How long a reader waits for a missing offset to become visible before it reports a gap
    /// (see `herald_core::gapless`).
    pub gap_confirm: Duration,
    /// How long a broker operation may take before the bus reports itself unavailable.
    pub timeout: Duration,
}

impl KafkaBusConfig {
    /// Defaults: topic `herald.<region>`, 16 partitions, replication 1, 5 minutes of keys.
    pub fn new(brokers: impl Into<String>, region: RegionName) -> Self {
        Self {
            brokers: brokers.into(),
            properties: Vec::new(),
            topic: format!("herald.{region}"),
            region,
            partitions: 16,
            replication: 1,
            idempotency_window: Duration::from_secs(300),
            gap_confirm: herald_core::gapless::DEFAULT_CONFIRM_AFTER,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Keyed message ids (derived from account and idempotency key) appended recently, by this node
/// or, read back from the partition's tail, by anyone before it started.
struct IdemCache {
    window: IdempotencyWindow<MessageId>,
    /// Partitions whose tail has been read back into the window.
    indexed: HashSet<u32>,
}

/// The keys an [`KafkaBus::append`] call reserved in the idempotency window (offset
/// `u64::MAX`, not written yet). Dropping it removes those still unresolved.
struct Placeholders<'a> {
    idem: &'a Mutex<IdemCache>,
    ids: Vec<MessageId>,
}

impl Drop for Placeholders<'_> {
    fn drop(&mut self) {
        if self.ids.is_empty() {
            return;
        }
        let mut idem = self.idem.lock();
        for id in &self.ids {
            if idem.window.get(id).is_some_and(|a| a.offset == u64::MAX) {
                idem.window.remove(id);
            }
        }
    }
}

/// How many records back from a partition's end a node reads keyed ids, the first time it
/// appends a keyed record to that partition.
const IDEM_TAIL: u64 = 20_000;

/// The Kafka bus.
pub struct KafkaBus {
    config: KafkaBusConfig,
    /// Replaced when a send fails fenced (the broker fences the idempotent producer after its
    /// messages timed out) or fatal: such a producer refuses every write until it is rebuilt.
    producer: parking_lot::RwLock<FutureProducer<LastError>>,
    last_error: LastError,
    /// For watermarks (no group, never subscribes).
    meta: Arc<BaseConsumer>,
    epoch: Epoch,
    partitions: u32,
    idem: Mutex<IdemCache>,
    /// Serializes appends with idempotency keys, so a key is checked and recorded atomically.
    keyed: tokio::sync::Mutex<()>,
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// A client configuration for `brokers` with `properties` (TLS, SASL, tuning) applied.
pub fn client_config(brokers: &str, properties: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers).set("socket.keepalive.enable", "true").set("log_level", "3");
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

/// A client context that remembers the last error librdkafka reported for the cluster (a failed
/// TLS handshake, a refused SASL login, a broker that cannot be reached), so that a failed
/// connect can say why instead of only "timed out".
#[derive(Clone, Default)]
pub struct LastError(Arc<Mutex<(Option<String>, Option<String>)>>);

impl LastError {
    /// The last error reported, if any: the last error log line (it says why a connection
    /// failed: a TLS handshake, a SASL login) before the last generic error ("all brokers down").
    pub fn get(&self) -> Option<String> {
        let e = self.0.lock();
        e.0.clone().or_else(|| e.1.clone())
    }
}

impl rdkafka::client::ClientContext for LastError {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        // librdkafka reports a failed TLS handshake or SASL login as an error-level log line
        // (facility FAIL, SSL, SASL…), not through the error callback.
        if (level as i32) <= rdkafka::config::RDKafkaLogLevel::Error as i32 {
            tracing::error!(facility = fac, "librdkafka: {log_message}");
            self.0.lock().0 = Some(format!("{fac}: {log_message}"));
        } else {
            tracing::debug!(facility = fac, "librdkafka: {log_message}");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::error!(error = %error, reason, "kafka client error");
        self.0.lock().1 = Some(format!("{error}: {reason}"));
    }
}

/// What kind of trouble a connect error is, for the `cause` label of
/// `herald_bus_connect_errors_total`: `auth`, `tls` or `unreachable`.
pub fn connect_error_cause(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("sasl") || m.contains("authenticat") {
        "auth"
    } else if m.contains("ssl") || m.contains("certificate") || m.contains("tls") || m.contains("handshake") {
        "tls"
    } else {
        "unreachable"
    }
}

impl KafkaBus {
    /// Connects, creates the topic (and its epoch topic) when missing, and reads the epoch.
    /// Fails with [`BusError::Unavailable`] when the brokers cannot be reached within the timeout.
    pub async fn connect(config: KafkaBusConfig) -> Result<Self, BusError> {
        let props = &config.properties;
        // The producer's context sees librdkafka's error log lines (its main queue is polled;
        // an admin client's is not), so a failed connect can name the cause.
        let last_error = LastError::default();
        let producer = new_producer(&config, &last_error)?;
        let meta: BaseConsumer = client_config(&config.brokers, props).set("group.id", "herald-meta").create().map_err(unavailable)?;
        let meta = Arc::new(meta);
        let admin: AdminClient<rdkafka::client::DefaultClientContext> = client_config(&config.brokers, props).create().map_err(unavailable)?;
        let epoch_topic = format!("{}.epoch", config.topic);
        // The first call that needs the brokers: when it fails, say what the client saw.
        let with_cause = |e: BusError| match (e, last_error.get()) {
            (BusError::Unavailable(m), Some(why)) => BusError::Unavailable(format!("{m} ({why})")),
            (e, _) => e,
        };
        create_topic(&admin, &config.topic, config.partitions as i32, config.replication, &[], config.timeout).await.map_err(with_cause)?;
        create_topic(&admin, &epoch_topic, 1, config.replication, &[("cleanup.policy", "compact")], config.timeout).await?;
        let partitions = partition_count(&meta, &config.topic, config.timeout).await?;
        let epoch = read_or_create_epoch(&config, &producer, &epoch_topic).await?;
        tracing::info!(topic = %config.topic, partitions, epoch = %epoch, "kafka bus connected");
        let idem = Mutex::new(IdemCache { window: IdempotencyWindow::new(config.idempotency_window), indexed: HashSet::new() });
        Ok(Self { config, producer: parking_lot::RwLock::new(producer), last_error, meta, epoch, partitions, idem, keyed: tokio::sync::Mutex::new(()) })
    }

    /// The brokers and topic this bus writes to.
    pub fn config(&self) -> &KafkaBusConfig {
        &self.config
    }

    async fn produce(&self, r: &NewRecord, partition: u32, id: &MessageId) -> Result<u64, BusError> {
        let headers = envelope::headers(r, id);
        let record = FutureRecord::to(&self.config.topic)
            .partition(partition as i32)
            .key(r.account.as_str())
            .payload(&r.data[..])
            .headers(headers);
        let producer = self.producer.read().clone();
        match producer.send(record, Timeout::After(self.config.timeout)).await {
            Ok(d) => Ok(d.offset as u64),
            Err((e, _)) => {
                self.renew_if_fenced(&producer, &e);
                Err(unavailable(e))
            }
        }
    }

    /// After a failed send: when `producer` can no longer write (librdkafka reports a fatal
    /// error, or the broker fences the idempotent producer, which happens after its messages
    /// timed out while the broker stalled), replace it, so the next write goes through a fresh
    /// producer instead of failing until the process restarts.
    fn renew_if_fenced(&self, producer: &FutureProducer<LastError>, error: &KafkaError) {
        use rdkafka::error::RDKafkaErrorCode as Code;
        use rdkafka::producer::Producer;
        let fenced = matches!(
            error.rdkafka_error_code(),
            Some(Code::ProducerFenced | Code::InvalidProducerEpoch | Code::UnknownProducerId | Code::OutOfOrderSequenceNumber | Code::Fatal)
        );
        let reason = match producer.client().fatal_error() {
            Some((code, reason)) => format!("{code:?}: {reason}"),
            None if fenced => error.to_string(),
            None => return,
        };
        let mut current = self.producer.write();
        // Another send may have replaced it already.
        if !std::ptr::eq(current.client().native_ptr(), producer.client().native_ptr()) {
            return;
        }
        match new_producer(&self.config, &self.last_error) {
            Ok(p) => {
                tracing::error!(reason, "kafka producer can no longer write (fenced or fatal); replaced it with a new one");
                *current = p;
            }
            Err(e) => tracing::error!(reason, error = %e, "kafka producer can no longer write and a new one could not be made; retrying at the next write"),
        }
    }
}

impl KafkaBus {
    /// Reads the keyed records of `partition`'s last [`IDEM_TAIL`] records published within the
    /// window into the idempotency cache.
    async fn index_tail(&self, partition: u32, window_ms: u64) -> Result<(), BusError> {
        let PartitionBounds { low, next } = self.bounds(partition).await?;
        let from = next.saturating_sub(IDEM_TAIL).max(low);
        let now = now_ms();
        let mut found = Vec::new();
        if from < next {
            let mut reader = self.open(partition, from).await?;
            loop {
                let batch = match tokio::time::timeout(self.config.timeout, reader.next_batch_before(next, 1000)).await {
                    Ok(b) => match b? {
                        Some(b) => b,
                        None => break,
                    },
                    Err(_) => return Err(unavailable(format!("reading partition {partition}'s keyed records timed out"))),
                };
                for r in batch.iter().filter(|r| r.id.as_str().starts_with('K') && now.saturating_sub(r.published_at_ms) <= window_ms) {
                    found.push((Appended { partition, offset: r.offset, id: r.id.clone(), duplicate: false }, r.published_at_ms));
                }
            }
        }
        let mut idem = self.idem.lock();
        for (a, at) in found {
            // A key this node already holds keeps its entry.
            idem.window.insert(a.id.clone(), a, at);
        }
        idem.indexed.insert(partition);
        Ok(())
    }
}

async fn create_topic<C: rdkafka::client::ClientContext + 'static>(
    admin: &AdminClient<C>,
    name: &str,
    partitions: i32,
    replication: i32,
    configs: &[(&str, &str)],
    timeout: Duration,
) -> Result<(), BusError> {
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Timeout::After(timeout))).request_timeout(Some(Timeout::After(timeout)));
    let results = tokio::time::timeout(timeout, admin.create_topics([&t], &opts)).await.map_err(|_| unavailable("create topic timed out"))?.map_err(unavailable)?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(unavailable(format!("create topic {t}: {code}"))),
        }
    }
    Ok(())
}

async fn partition_count(meta: &Arc<BaseConsumer>, topic: &str, timeout: Duration) -> Result<u32, BusError> {
    let (meta, topic) = (meta.clone(), topic.to_owned());
    // Metadata right after creation may lag: ask until the topic shows its partitions.
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let md = meta.fetch_metadata(Some(&topic), Timeout::After(Duration::from_secs(2))).map_err(unavailable)?;
            if let Some(t) = md.topics().iter().find(|t| t.name() == topic)
                && t.error().is_none() && !t.partitions().is_empty() {
                    return Ok(t.partitions().len() as u32);
                }
            if std::time::Instant::now() > deadline {
                return Err(unavailable(format!("topic {topic} has no partitions")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .map_err(unavailable)?
}

/// The idempotent producer every write goes through.
fn new_producer(config: &KafkaBusConfig, last_error: &LastError) -> Result<FutureProducer<LastError>, BusError> {
    producer_config(config).create_with_context(last_error.clone()).map_err(unavailable)
}

/// [`new_producer`]'s settings.
fn producer_config(config: &KafkaBusConfig) -> ClientConfig {
    let mut c = client_config(&config.brokers, &config.properties);
    // Tuning the operator may change in `[kafka.properties]`: wait at most 1 ms to fill a batch
    // (latency first). Set after the properties, it used to override an operator's choice.
    let tuned = |key: &str| config.properties.iter().any(|(k, _)| k == key);
    if !tuned("linger.ms") && !tuned("queue.buffering.max.ms") {
        c.set("linger.ms", "1");
    }
    c.set("enable.idempotence", "true").set("acks", "all").set("message.timeout.ms", config.timeout.as_millis().to_string());
    c
}

async fn read_or_create_epoch(config: &KafkaBusConfig, producer: &FutureProducer<LastError>, epoch_topic: &str) -> Result<Epoch, BusError> {
    if let Some(e) = reader::first_record_value(config, epoch_topic).await? {
        return Epoch::new(&e).map_err(|_| unavailable(format!("{epoch_topic} holds a malformed epoch {e:?}")));
    }
    let mine = Epoch::random();
    let record = FutureRecord::to(epoch_topic).partition(0).key(mine.as_str()).payload(mine.as_str());
    producer.send(record, Timeout::After(config.timeout)).await.map_err(|(e, _)| unavailable(e))?;
    // Another node may have written first: the first record wins, for everyone.
    let first = reader::first_record_value(config, epoch_topic).await?.ok_or_else(|| unavailable("epoch write vanished"))?;
    Epoch::new(&first).map_err(|_| unavailable(format!("{epoch_topic} holds a malformed epoch {first:?}")))
}

/// How long the read-back of the last copy keeps reading past the partition's reported end
/// while records keep coming (`herald_core::replica::scan_last_origin_offset`).
const READ_PAST_END: Duration = Duration::from_millis(200);

#[async_trait]
impl ReplicaLog for KafkaBus {
    async fn append_replicated(&self, partition: u32, records: &[Arc<Record>], origin_epoch: &Epoch) -> Result<Vec<u64>, BusError> {
        if partition >= self.partitions {
            return Err(BusError::NoPartition(partition));
        }
        // Sent concurrently: the idempotent producer keeps them in order within the partition.
        let producer = self.producer.read().clone();
        let sends = records.iter().map(|r| {
            let record = FutureRecord::to(&self.config.topic)
                .partition(partition as i32)
                .key(r.account.as_str())
                .payload(&r.data[..])
                .headers(envelope::replicated_headers(r, origin_epoch));
            producer.send(record, Timeout::After(self.config.timeout))
        });
        let mut offsets = Vec::with_capacity(records.len());
        for r in futures_util::future::join_all(sends).await {
            match r {
                Ok(d) => offsets.push(d.offset as u64),
                Err((e, _)) => {
                    self.renew_if_fenced(&producer, &e);
                    return Err(unavailable(e));
                }
            }
        }
        Ok(offsets)
    }

    async fn last_origin_offset(&self, partition: u32, origin: &RegionName) -> Result<Option<u64>, BusError> {
        // The high watermark counts every acknowledged copy (acks=all) on Kafka, and the gapless
        // readers wait for any of them not visible yet. A broker that reports its end short of
        // the last batch (tansu) is covered by reading on past it.
        scan_last_origin_offset(self, partition, origin, self.config.timeout, READ_PAST_END).await
    }
}

#[async_trait]
impl Bus for KafkaBus {
    fn epoch(&self) -> Epoch {
        self.epoch.clone()
    }

    fn region(&self) -> RegionName {
        self.config.region.clone()
    }

    fn partitions(&self) -> u32 {
        self.partitions
    }

    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Appended>, BusError> {
        let window_ms = self.config.idempotency_window.as_millis() as u64;
        let keyed = records.iter().any(|r| r.idempotency_key.is_some());
        let _guard = if keyed { Some(self.keyed.lock().await) } else { None };
        if keyed {
            // Keys used before this node started (or by another node, or before a crash) are
            // in the partition's tail: read them back once, so a repeat is not appended again.
            let mut parts: Vec<u32> = records.iter().filter(|r| r.idempotency_key.is_some()).map(|r| self.partition_of(&r.account)).collect();
            parts.sort_unstable();
            parts.dedup();
            for p in parts {
                if !self.idem.lock().indexed.contains(&p) {
                    self.index_tail(p, window_ms).await?;
                }
            }
        }
        let mut out: Vec<Appended> = Vec::with_capacity(records.len());
        // Placeholders this call puts in the window leave it again if the call is abandoned (a
        // client that gave up drops the future while the produce waits): otherwise a retry of
        // the key would be answered as a duplicate of a record that was never written.
        let mut placeholders = Placeholders { idem: &self.idem, ids: Vec::new() };
        // Send concurrently (librdkafka batches them), in order per partition.
        let mut pending = Vec::with_capacity(records.len());
        for r in &records {
            let partition = self.partition_of(&r.account);
            if let Some(key) = &r.idempotency_key {
                let now = now_ms();
                let mut idem = self.idem.lock();
                idem.window.expire(now);
                let id = envelope::keyed_message_id(&r.account, key, r.published_at_ms);
                if let Some(first) = idem.window.get(&id) {
                    out.push(Appended { duplicate: true, ..first.clone() });
                    pending.push(None);
                    continue;
                }
                // A placeholder, so a repeat of the key within this batch is a duplicate too.
                let a = Appended { partition, offset: u64::MAX, id: id.clone(), duplicate: false };
                idem.window.insert(id.clone(), a.clone(), now);
                placeholders.ids.push(id.clone());
                out.push(a);
                pending.push(Some((partition, id)));
            } else {
                let id = MessageId::generate(r.published_at_ms);
                out.push(Appended { partition, offset: u64::MAX, id: id.clone(), duplicate: false });
                pending.push(Some((partition, id)));
            }
        }
        let sends = records.iter().zip(&pending).filter_map(|(r, p)| p.as_ref().map(|(part, id)| self.produce(r, *part, id)));
        let offsets = futures_util::future::join_all(sends).await;
        let mut offsets = offsets.into_iter();
        let mut first_error = None;
        for (i, p) in pending.iter().enumerate() {
            if p.is_none() {
                continue;
            }
            match offsets.next().expect("one result per send") {
                Ok(o) => out[i].offset = o,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        // Fill in duplicates that pointed at records of this same batch, and the cache.
        let mut idem = self.idem.lock();
        for (i, r) in records.iter().enumerate() {
            if r.idempotency_key.is_some() {
                let k = out[i].id.clone();
                if pending[i].is_some() {
                    if out[i].offset == u64::MAX {
                        idem.window.remove(&k);
                    } else if let Some(first) = idem.window.get_mut(&k) {
                        first.offset = out[i].offset;
                    }
                } else if out[i].offset == u64::MAX
                    && let Some(first) = idem.window.get(&k) {
                        out[i].offset = first.offset;
                    }
            }
        }
        drop(idem);
        // Every placeholder is now resolved or removed.
        placeholders.ids.clear();
        if let Some(e) = first_error {
            return Err(e);
        }
        if out.iter().any(|a| a.offset == u64::MAX) {
            // Never answer with a position that does not exist.
            return Err(unavailable("a record of this batch has no position yet; retry"));
        }
        Ok(out)
    }

    async fn bounds(&self, partition: u32) -> Result<PartitionBounds, BusError> {
        if partition >= self.partitions {
            return Err(BusError::NoPartition(partition));
        }
        let (low, next) = reader::watermarks(&self.meta, &self.config.topic, partition, self.config.timeout).await?;
        Ok(PartitionBounds { low, next })
    }

    async fn open(&self, partition: u32, from: u64) -> Result<Box<dyn PartitionReader>, BusError> {
        if partition >= self.partitions {
            return Err(BusError::NoPartition(partition));
        }
        let (low, _) = reader::watermarks(&self.meta, &self.config.topic, partition, self.config.timeout).await?;
        if from < low {
            return Err(BusError::Truncated { requested: from, low });
        }
        // A broker may expose a later write before an earlier one: never read past a hole.
        let raw = reader::KafkaReader::open(&self.config, self.meta.clone(), partition, from)?;
        Ok(Box::new(GaplessReader::new(Box::new(raw), self.config.gap_confirm)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producer_lingers_1_ms_unless_the_operator_tunes_it_and_stays_idempotent() {
        let mut config = KafkaBusConfig::new("127.0.0.1:9092", RegionName::new("eu").unwrap());
        let c = producer_config(&config);
        assert_eq!((c.get("linger.ms"), c.get("enable.idempotence"), c.get("acks")), (Some("1"), Some("true"), Some("all")));
        config.properties.push(("linger.ms".into(), "20".into()));
        config.properties.push(("client.id".into(), "herald-eu".into()));
        let c = producer_config(&config);
        assert_eq!((c.get("linger.ms"), c.get("client.id"), c.get("enable.idempotence")), (Some("20"), Some("herald-eu"), Some("true")));
    }
}
