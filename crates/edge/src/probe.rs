//! Honest health: the node sends a probe record through its own bus and watches it come back
//! through its partition consumer and hub, like any client's record. If probes stop coming back
//! (the bus refuses writes, a consumer is stuck), `/readyz` turns 503 and `herald_probe_ok` 0,
//! instead of a node that looks healthy while delivering nothing.

use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_core::{AccountId, ChannelKey, ChannelName, now_ms};

use crate::outbox::{OutItem, Outbox};
use crate::state::{Edge, PublishItem};
use crate::subscribe;

/// The account probes are published to. Its records carry only the node name and a counter.
pub const PROBE_ACCOUNT: &str = "herald-probe";

/// The probe's view of the node.
#[derive(Default)]
pub struct ProbeState {
    ok: AtomicBool,
    /// Publish time (ms) of the last probe seen back.
    last_seen_ms: AtomicU64,
}

impl ProbeState {
    /// Whether probes are coming back in time.
    pub fn is_ok(&self) -> bool {
        self.ok.load(Ordering::Acquire)
    }
}

/// Runs the probe until `stop`. Marks the node healthy after the first probe comes back.
pub async fn run(edge: Arc<Edge>, stop: CancellationToken) {
    let account = AccountId::new(PROBE_ACCOUNT).expect("valid");
    let channel = ChannelName::new(&format!("probe:{}", edge.node).replace('_', "-")).unwrap_or_else(|_| ChannelName::new("probe").expect("valid"));
    let interval = Duration::from_millis(edge.config.probe_interval_ms);
    let stall = edge.config.probe_stall_ms;
    let outbox = Outbox::new(1 << 20);
    // Subscribe like a client would, so the probe crosses the same consumer and hub.
    let sub = loop {
        match subscribe::open(&edge, outbox.clone(), vec![ChannelKey::new(account.clone(), channel.clone())], None, subscribe::Delivery::default()).await {
            Ok(o) => break subscribe::replay(&edge, o, None).await.0,
            Err(_) => {
                set(&edge, false);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(interval) => continue,
                }
            }
        }
    };
    let mut tick = tokio::time::interval(interval);
    let mut sent_unanswered_since: Option<u64> = None;
    let mut items = Vec::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                let sent = now_ms();
                let item = PublishItem { account: account.clone(), channel: channel.clone(), data: Bytes::from(format!("{{\"node\":\"{}\",\"t\":{sent}}}", edge.node)), idempotency_key: None };
                // Bounded: a bus that hangs must not hang the probe.
                let published = tokio::time::timeout(Duration::from_millis(stall), edge.publish(vec![item])).await;
                if !matches!(published, Ok(Ok(_))) {
                    tracing::warn!("probe publish failed or timed out");
                }
                sent_unanswered_since.get_or_insert(sent);
            }
            _ = outbox.ready() => {}
        }
        items.clear();
        outbox.take(usize::MAX, &mut items);
        for it in &items {
            if let OutItem::Record(r) = it {
                let t = std::str::from_utf8(&r.frame).ok().and_then(|f| f.split("\"t\":").nth(1)).and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()).and_then(|n| n.parse::<u64>().ok());
                if let Some(t) = t {
                    edge.probe.last_seen_ms.store(t, Ordering::Release);
                    edge.metrics.probe_lag.set(now_ms().saturating_sub(t) as f64 / 1000.0);
                    sent_unanswered_since = None;
                }
            }
        }
        let stalled = sent_unanswered_since.is_some_and(|s| now_ms().saturating_sub(s) > stall);
        let healthy = edge.probe.last_seen_ms.load(Ordering::Acquire) > 0 && !stalled;
        if healthy != edge.probe.is_ok() {
            if healthy {
                tracing::info!("probe: records flow through the bus again");
            } else {
                tracing::error!(stall_ms = stall, "probe: records stopped coming back through the bus; node unready");
            }
        }
        set(&edge, healthy);
    }
    subscribe::close(&edge, &sub);
}

fn set(edge: &Edge, ok: bool) {
    edge.probe.ok.store(ok, Ordering::Release);
    edge.metrics.set_probe(ok);
}
