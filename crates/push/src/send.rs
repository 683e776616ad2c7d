//! Sending one notification to one device: the per-device rate limit, the bound on requests in
//! flight, and retries with backoff (honouring `Retry-After`) within the retry budget.

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use herald_core::{MessageId, Platform, Registration};

use crate::apns::Apns;
use crate::fcm::Fcm;
use crate::metrics::Metrics;
use crate::rules::Notification;

/// What one request to APNs or FCM came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the service.
    Sent,
    /// The device token is gone (APNs 410 or `BadDeviceToken`, FCM `UNREGISTERED`), as of this
    /// time (milliseconds): remove the registration.
    Gone {
        /// When the service says the token stopped being valid.
        since_ms: u64,
    },
    /// Worth another try (429, 5xx, a broken connection, an expired provider token), no earlier
    /// than `after` when the service said so.
    Retry {
        /// The service's `Retry-After`.
        after: Option<Duration>,
        /// A short label for metrics.
        reason: &'static str,
        /// What happened, for logs and the dead letter.
        detail: String,
    },
    /// Refused for good (a bad request, a payload too large, an unknown project).
    Failed {
        /// A short label for metrics.
        reason: &'static str,
        /// What happened.
        detail: String,
    },
}

/// The providers configured: APNs, FCM, or both.
#[derive(Default)]
pub struct Providers {
    /// APNs, if `[push.apns]` is set.
    pub apns: Option<Apns>,
    /// FCM, if `[push.fcm]` is set.
    pub fcm: Option<Fcm>,
}

/// Limits on sending, from `[push]`.
#[derive(Clone, Debug)]
pub struct SendLimits {
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Notifications per device per minute.
    pub per_device_per_minute: u32,
    /// Attempts per notification.
    pub max_attempts: u32,
    /// Time a notification may spend retrying.
    pub max_retry: Duration,
    /// The first backoff (doubled each retry, up to 30 s, with jitter).
    pub first_backoff: Duration,
}

impl SendLimits {
    /// The limits `[push]` gives.
    pub fn from_config(c: &herald_config::PushConfig) -> Self {
        Self {
            concurrency: c.concurrency,
            per_device_per_minute: c.per_device_per_minute,
            max_attempts: c.max_attempts,
            max_retry: Duration::from_secs(c.max_retry_secs),
            first_backoff: Duration::from_millis(500),
        }
    }
}

/// Sends notifications within the limits.
pub struct Sender {
    providers: Providers,
    limits: SendLimits,
    permits: Semaphore,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// How many device buckets are kept before full ones are forgotten.
const MAX_BUCKETS: usize = 100_000;

/// The `apns-id` of one record on one device: a UUID from a hash of the two, so that a resend
/// after a restart carries the same id.
pub fn notification_id(record: &MessageId, device: &Registration) -> String {
    let h = Sha256::new().chain_update(record.as_str()).chain_update(b"\n").chain_update(device.device_key()).finalize();
    let mut b: [u8; 16] = h[..16].try_into().expect("16 bytes");
    // A version-4 (random) UUID layout, as Apple's own ids are.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

impl Sender {
    /// A sender over `providers`.
    pub fn new(providers: Providers, limits: SendLimits) -> Self {
        Self { permits: Semaphore::new(limits.concurrency), providers, limits, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token from the device's bucket; false when it is empty.
    pub fn allow(&self, device: &str) -> bool {
        let capacity = self.limits.per_device_per_minute as f64;
        let per_sec = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * per_sec < capacity);
        }
        let (tokens, at) = buckets.entry(device.to_owned()).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_sec).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    async fn once(&self, n: &Notification, device: &Registration, id: &str) -> Outcome {
        let Ok(_permit) = self.permits.acquire().await else {
            return Outcome::Failed { reason: "closed", detail: "the sender is closed".into() };
        };
        match device.platform {
            Platform::Apns => match &self.providers.apns {
                Some(a) => a.send(n, device, id).await,
                None => Outcome::Failed { reason: "not_configured", detail: "an APNs device, and [push.apns] is not set".into() },
            },
            Platform::Fcm => match &self.providers.fcm {
                Some(f) => f.send(n, device).await,
                None => Outcome::Failed { reason: "not_configured", detail: "an FCM device, and [push.fcm] is not set".into() },
            },
        }
    }

    /// Sends `n` to `device`, retrying within the budget. Returns the last outcome (never
    /// `Retry`: a retry that does not fit the budget becomes `Failed` with `retries_exhausted`)
    /// and the number of attempts.
    pub async fn send(&self, n: &Notification, device: &Registration, record: &MessageId, metrics: &Metrics) -> (Outcome, u32) {
        let id = notification_id(record, device);
        let started = Instant::now();
        let mut backoff = self.limits.first_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.once(n, device, &id).await {
                Outcome::Retry { after, reason, detail } => {
                    metrics.retry(device.platform, reason);
                    let jitter = backoff.mul_f64(rand::random::<f64>() * 0.2);
                    // The service's Retry-After is a floor; our own backoff applies without one.
                    let wait = after.unwrap_or(backoff + jitter);
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    if attempt >= self.limits.max_attempts || started.elapsed() + wait > self.limits.max_retry {
                        return (Outcome::Failed { reason: "retries_exhausted", detail: format!("{reason}: {detail}") }, attempt);
                    }
                    tracing::debug!(platform = %device.platform, reason, detail, wait_ms = wait.as_millis() as u64, "push: retrying");
                    tokio::time::sleep(wait).await;
                }
                other => return (other, attempt),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_minute: u32) -> SendLimits {
        SendLimits { concurrency: 4, per_device_per_minute: per_minute, max_attempts: 3, max_retry: Duration::from_secs(60), first_backoff: Duration::from_millis(1) }
    }

    #[test]
    fn a_device_gets_its_bucket_and_no_more() {
        let s = Sender::new(Providers::default(), limits(3));
        assert!((0..3).all(|_| s.allow("fcm:a")));
        assert!(!s.allow("fcm:a"));
        assert!(s.allow("fcm:b"), "another device has its own bucket");
    }

    #[test]
    fn notification_ids_are_stable_uuids_per_record_and_device() {
        let d = herald_core::devices::conformance::registration("acme", "u", Platform::Apns, "phone", &["*"]);
        let other = herald_core::devices::conformance::registration("acme", "u", Platform::Apns, "phone2", &["*"]);
        let r = MessageId::generate(1);
        let id = notification_id(&r, &d);
        assert_eq!(id, notification_id(&r, &d));
        assert_ne!(id, notification_id(&r, &other));
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
    }
}
