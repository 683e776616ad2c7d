//! One endpoint's delivery loop: read the feed from the endpoint's stored position, batch the
//! events it wants, POST each batch signed until it is answered 2xx (with exponential backoff and
//! jitter, for at most `retry_for`), then store the position. A batch that outlives `retry_for`
//! goes to the dead-letter topic. Nothing after a failing batch is sent before it: a receiver
//! that was down gets every event, in order, once it answers again.

use bytes::Bytes;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::client::{Poster, Target};
use crate::event::{Event, EventType, events_of};
use crate::feed::{FeedReader, Next, watermarks};
use crate::{Shared, WebhookError};

/// The first wait after a failed attempt; each next one doubles, up to `max_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// How often, at most, the lag gauge is refreshed.
const LAG_EVERY: Duration = Duration::from_secs(5);

/// One endpoint, ready to deliver to.
#[derive(Clone)]
pub struct Endpoint {
    /// Its name (the key of its position, its metrics label).
    pub name: String,
    /// Where requests go.
    pub target: Arc<Target>,
    /// The types it gets (`None`: all).
    pub events: Option<HashSet<EventType>>,
    /// The accounts it gets (`None`: all).
    pub accounts: Option<HashSet<String>>,
    /// At most this many events per request.
    pub batch_size: usize,
    /// How long the first event of a batch waits for more.
    pub linger: Duration,
    /// How long a batch is retried before it is dead-lettered.
    pub retry_for: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
    /// One attempt's time limit.
    pub timeout: Duration,
    /// The signing secrets (one signature each).
    pub secrets: Arc<Vec<Vec<u8>>>,
}

impl Endpoint {
    fn wants(&self, e: &Event) -> bool {
        self.events.as_ref().is_none_or(|t| t.contains(&e.kind)) && self.accounts.as_ref().is_none_or(|a| a.contains(&e.account))
    }
}

/// Delivers to `ep` while `active` (this instance holds the lease), starting over after errors
/// (Kafka or Redis away). Cancels `active` when it finds the lease lost.
pub async fn run(ep: Endpoint, shared: Arc<Shared>, active: CancellationToken) {
    let mut pause = Duration::from_secs(1);
    while !active.is_cancelled() {
        match deliver(&ep, &shared, &active).await {
            Ok(()) => return,
            Err(WebhookError::LeaseLost) => {
                tracing::warn!(endpoint = %ep.name, "the lease was lost; this instance stands by");
                active.cancel();
                return;
            }
            Err(e) => tracing::warn!(endpoint = %ep.name, error = %e, retry_in_ms = pause.as_millis() as u64, "webhooks: delivery stopped; starting again"),
        }
        tokio::select! {
            _ = active.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

/// Where an endpoint starts: its stored positions, else the end of each partition (events from
/// when it was first configured on); stored first, so that a crash cannot skip anything.
async fn start_positions(ep: &Endpoint, shared: &Shared) -> Result<HashMap<i32, i64>, WebhookError> {
    let stored = shared.store.positions(&ep.name).await?;
    let marks = watermarks(&shared.meta, &shared.topic).await?;
    let mut start = HashMap::new();
    let mut fresh = Vec::new();
    for (p, (low, high)) in marks.into_iter().enumerate() {
        let p = p as i32;
        let at = match stored.get(&p) {
            Some(&o) if o < low => {
                tracing::warn!(endpoint = %ep.name, partition = p, stored = o, oldest = low, "webhooks: events older than the topic's retention were never delivered");
                fresh.push((p, low));
                low
            }
            Some(&o) => o,
            None => {
                fresh.push((p, high));
                high
            }
        };
        start.insert(p, at);
    }
    if !shared.store.save(&ep.name, &fresh).await? {
        return Err(WebhookError::LeaseLost);
    }
    Ok(start)
}

async fn deliver(ep: &Endpoint, shared: &Shared, active: &CancellationToken) -> Result<(), WebhookError> {
    let metrics = shared.metrics.endpoint(&ep.name);
    let start = start_positions(ep, shared).await?;
    let mut reader = FeedReader::open(&shared.brokers, &shared.kafka_properties, &shared.topic, start, shared.gap_confirm)?;
    let mut poster = Poster::new(ep.target.clone(), ep.timeout);
    // Events of a record that did not fit in the last batch, and its position.
    let mut carry: Option<(Vec<Event>, (i32, i64))> = None;
    let mut last_lag: Option<Instant> = None;
    loop {
        // 1. A batch: up to batch_size events, the first waiting at most `linger` for others.
        let mut batch: Vec<Event> = Vec::new();
        // Partition → next offset once this batch is delivered (filtered records included).
        let mut upto: HashMap<i32, i64> = HashMap::new();
        if let Some((events, (p, o))) = carry.take() {
            batch.extend(events);
            upto.insert(p, o);
        }
        let mut deadline = (!batch.is_empty()).then(|| tokio::time::Instant::now() + ep.linger);
        while batch.len() < ep.batch_size {
            let wait = deadline.map_or(LAG_EVERY, |d| d.saturating_duration_since(tokio::time::Instant::now()));
            let next = tokio::select! {
                _ = active.cancelled() => return Ok(()),
                n = reader.next(wait) => n?,
            };
            match next {
                Next::Record(r) => {
                    let events: Vec<Event> = match events_of(shared.region.as_str(), r.partition, r.offset, &r.payload) {
                        Ok(events) => events.into_iter().filter(|e| ep.wants(e)).collect(),
                        Err(e) => {
                            tracing::warn!(partition = r.partition, offset = r.offset, error = %e, "webhooks: skipping a record of the feed topic");
                            Vec::new()
                        }
                    };
                    if !batch.is_empty() && batch.len() + events.len() > ep.batch_size {
                        carry = Some((events, (r.partition, r.offset + 1)));
                        break;
                    }
                    upto.insert(r.partition, r.offset + 1);
                    if !events.is_empty() && deadline.is_none() {
                        deadline = Some(tokio::time::Instant::now() + ep.linger);
                    }
                    batch.extend(events);
                }
                Next::Gap(p, o) => {
                    metrics.gaps.increment(1);
                    tracing::warn!(endpoint = %ep.name, partition = p, to = o, "webhooks: a hole in the feed topic stayed; skipped");
                    upto.insert(p, o);
                }
                Next::Idle if batch.is_empty() => {
                    // Quiet: store how far filtered records got, refresh the lag.
                    if !upto.is_empty() {
                        break;
                    }
                    if last_lag.is_none_or(|t| t.elapsed() >= LAG_EVERY) {
                        last_lag = Some(Instant::now());
                        metrics.lag.set(lag(shared, reader.positions()).await as f64);
                    }
                }
                Next::Idle => break,
            }
        }
        // 2. Delivered (or dead-lettered) before anything after it.
        if !batch.is_empty() {
            let body = Bytes::from(serde_json::to_vec(&serde_json::json!({ "events": batch })).expect("serializable"));
            let first_attempt = Instant::now();
            let mut backoff = FIRST_BACKOFF;
            loop {
                let t = herald_core::now_ms() / 1000;
                let signature = crate::signature::sign(&ep.secrets, t, &body);
                let result = tokio::select! {
                    _ = active.cancelled() => return Ok(()),
                    r = poster.post(body.clone(), &signature) => r,
                };
                match result {
                    Ok(()) => {
                        metrics.delivered.increment(batch.len() as u64);
                        metrics.retrying.set(0.0);
                        break;
                    }
                    Err(e) => {
                        metrics.failed(&e.status);
                        metrics.retrying.set(batch.len() as f64);
                        if first_attempt.elapsed() >= ep.retry_for {
                            tracing::error!(endpoint = %ep.name, events = batch.len(), error = %e.message, "webhooks: retried for retry_for_secs; events go to the dead-letter topic");
                            dead_letter(shared, ep, &batch, &e.message, active).await;
                            if active.is_cancelled() {
                                return Ok(());
                            }
                            metrics.dead_lettered.increment(batch.len() as u64);
                            metrics.retrying.set(0.0);
                            break;
                        }
                        tracing::debug!(endpoint = %ep.name, status = %e.status, error = %e.message, "webhooks: attempt failed");
                        // Equal jitter: half the wait fixed, half random, so that endpoints that
                        // failed together do not retry together.
                        let wait = backoff / 2 + backoff.mul_f64(rand::random::<f64>() / 2.0);
                        tokio::select! {
                            _ = active.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(wait) => {}
                        }
                        backoff = (backoff * 2).min(ep.max_backoff);
                    }
                }
            }
        }
        // 3. The position moves only now.
        let positions: Vec<(i32, i64)> = upto.into_iter().collect();
        if !shared.store.save(&ep.name, &positions).await? {
            return Err(WebhookError::LeaseLost);
        }
        if last_lag.is_none_or(|t| t.elapsed() >= LAG_EVERY) {
            last_lag = Some(Instant::now());
            metrics.lag.set(lag(shared, reader.positions()).await as f64);
        }
    }
}

/// Records in the topic after `positions` (0 when the brokers do not answer).
async fn lag(shared: &Shared, positions: &HashMap<i32, i64>) -> i64 {
    match watermarks(&shared.meta, &shared.topic).await {
        Ok(marks) => marks.iter().enumerate().map(|(p, (_, high))| (high - positions.get(&(p as i32)).copied().unwrap_or(*high)).max(0)).sum(),
        Err(_) => 0,
    }
}

/// Writes `batch` to the dead-letter topic, one record per event (keyed by account, headers
/// `herald-endpoint` and `herald-error`), retrying until the brokers take it (or `active` ends).
async fn dead_letter(shared: &Shared, ep: &Endpoint, batch: &[Event], error: &str, active: &CancellationToken) {
    for e in batch {
        let value = serde_json::to_string(e).expect("serializable");
        loop {
            let headers = OwnedHeaders::new().insert(Header { key: "herald-endpoint", value: Some(ep.name.as_str()) }).insert(Header { key: "herald-error", value: Some(error) });
            let record = FutureRecord::to(&shared.dead_letter_topic).key(&e.account).payload(&value).headers(headers);
            let sent = tokio::select! {
                _ = active.cancelled() => return,
                r = shared.producer.send(record, Duration::from_secs(30)) => r,
            };
            match sent {
                Ok(_) => break,
                Err((err, _)) => {
                    tracing::warn!(error = %err, topic = %shared.dead_letter_topic, "webhooks: the dead-letter topic refused an event; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}
