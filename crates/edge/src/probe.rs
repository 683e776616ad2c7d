//! Honest health: the node sends a probe record through its own bus and watches it come back
//! through its partition consumer and hub, like any client's record. If probes stop coming back
//! (the bus refuses writes, a consumer is stuck), `/readyz` turns 503 and `herald_probe_ok` 0,
//! instead of a node that looks healthy while delivering nothing.
//!
//! The bound: a probe is sent every `probe_interval_ms` and counts as unanswered from the moment
//! it is sent, whatever its publish does (the publish runs on its own task, so a bus that hangs
//! it holds nothing up); the verdict is taken on every tick and every probe that comes back. So
//! the node turns unready at most `probe_stall_ms + probe_interval_ms` after the first probe that
//! does not come back was sent, and ready again at the first probe that does.

use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_core::{AccountId, ChannelKey, ChannelName, now_ms};

use herald_engine::outbox::{OutItem, Outbox};
use crate::state::{Edge, PublishItem};
use herald_engine::subscribe;
pub use herald_core::PROBE_ACCOUNT;

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
        match subscribe::open(&edge.engine, outbox.clone(), vec![ChannelKey::new(account.clone(), channel.clone())], None, subscribe::Delivery::default()).await {
            Ok(o) => break subscribe::replay(&edge.engine, o, None).await.0,
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
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent_unanswered_since: Option<u64> = None;
    // The publish in flight: it runs on its own, so a bus that hangs it cannot hold up the
    // verdict below (issue 21). A probe counts as unanswered from the moment it is sent.
    let mut publishing: Option<tokio::task::JoinHandle<()>> = None;
    let mut items = Vec::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                let sent = now_ms();
                sent_unanswered_since.get_or_insert(sent);
                if publishing.as_ref().is_none_or(|p| p.is_finished()) {
                    let item = PublishItem { account: account.clone(), channel: channel.clone(), data: Bytes::from(format!("{{\"node\":\"{}\",\"t\":{sent}}}", edge.node)), idempotency_key: None };
                    let edge = edge.clone();
                    publishing = Some(tokio::spawn(async move {
                        // Bounded, so a hung publish does not hold the next probe back forever.
                        if !matches!(tokio::time::timeout(Duration::from_millis(stall), edge.publish(vec![item])).await, Ok(Ok(_))) {
                            tracing::warn!("probe publish failed or timed out");
                        }
                    }));
                }
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
    if let Some(p) = publishing {
        p.abort();
    }
    subscribe::close(&edge.engine, &sub);
}

fn set(edge: &Edge, ok: bool) {
    edge.probe.ok.store(ok, Ordering::Release);
    edge.metrics.set_probe(ok);
}
