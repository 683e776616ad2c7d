//! A region in one process for the worker's tests: an in-memory bus and presence, a real Redis
//! (registrations, lease, positions), and fake APNs and FCM servers.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_bus_memory::{MemoryBus, MemoryBusConfig};
use herald_config::PushConfig;
use herald_core::devices::conformance;
use herald_core::{AccountId, Bus, ChannelKey, ChannelName, DeviceRegistry, MessageId, NewRecord, Platform, Presence, PresenceMember, RegionName, Registration, now_ms};
use herald_presence_memory::MemoryPresence;
use herald_presence_redis::testing::RedisServer;
use herald_push::testing::{BUNDLE_ID, Fake, PROJECT_ID};
use herald_push::{Metrics, PushDeps, RedisRegistry, RedisStore, Rules, SendLimits, Sender, WorkerSettings};

pub const PUSH: &str = r#"
[push]
lease_ttl_secs = 2
[push.fcm]
service_account_file = "replaced by the fake's"
[[push.channels]]
pattern = "incidents"
title = "Incident {/id}"
body = "{/summary}"
data = { n = "{/n}" }
collapse_key = "incident-{/id}"
[[push.channels]]
pattern = "personal:*"
body = "{/text}"
data = { n = "{/n}" }
[[push.channels]]
pattern = "@*"
body = "{/text}"
data = { n = "{/n}" }
"#;

pub struct Region {
    pub bus: Arc<MemoryBus>,
    pub presence: Arc<MemoryPresence>,
    pub registry: Arc<RedisRegistry>,
    pub redis: RedisServer,
    pub apns: Fake,
    pub fcm: Fake,
    pub config: PushConfig,
    conn: redis::aio::ConnectionManager,
}

pub struct Worker {
    pub metrics: Arc<Metrics>,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl Region {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// A region whose `[push]` is [`PUSH`] changed by `edit`.
    pub async fn with(edit: impl FnOnce(&mut PushConfig)) -> Self {
        let redis = RedisServer::start();
        let conn = herald_push::store::connect(&redis.url(), &Default::default()).unwrap();
        let (apns, fcm) = (Fake::apns().await, Fake::fcm().await);
        let mut config = toml::from_str::<herald_config::Config>(PUSH).unwrap().push;
        config.apns = Some(apns.apns_config());
        config.fcm = Some(fcm.fcm_config());
        edit(&mut config);
        let mut bus = MemoryBusConfig::new(RegionName::new("eu").unwrap());
        bus.partitions = 4;
        Self {
            bus: Arc::new(MemoryBus::new(bus)),
            presence: Arc::new(MemoryPresence::new()),
            registry: Arc::new(RedisRegistry::new(conn.clone(), &config.prefix)),
            redis,
            apns,
            fcm,
            config,
            conn,
        }
    }

    pub fn store(&self) -> RedisStore {
        RedisStore::new(self.conn.clone(), &self.config.prefix, &self.bus.region(), &self.bus.epoch(), self.config.dead_letter_max)
    }

    /// Starts a worker named `holder` (it waits for the lease like a real replica).
    pub fn worker(&self, holder: &str) -> Worker {
        let metrics = Arc::new(Metrics::default());
        let providers = herald_push::providers(&self.config).expect("the fakes' credentials load");
        let deps = PushDeps {
            bus: self.bus.clone(),
            presence: self.presence.clone(),
            registry: self.registry.clone(),
            store: self.store(),
            sender: Arc::new(Sender::new(providers, SendLimits::from_config(&self.config))),
            rules: Rules::new(self.config.channels.clone()),
            metrics: metrics.clone(),
            settings: WorkerSettings::from_config(&self.config, holder.to_owned()),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(herald_push::run(deps, stop.clone()));
        Worker { metrics, stop, task }
    }

    /// Waits until `w` holds the lease and every partition has a stored position (records
    /// published from now on are pushed).
    pub async fn until_pushing(&self, w: &Worker) {
        herald_push::testing::eventually("the worker to take the lease", || metric(&w.metrics, "herald_push_active") == 1.0).await;
        for p in 0..self.bus.partitions() {
            while self.store().position(p).await.unwrap().is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Waits until the stored position of every partition is the end of the bus: every record
    /// published so far was handled.
    pub async fn until_settled(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        'again: loop {
            assert!(std::time::Instant::now() < deadline, "the worker did not catch up");
            for p in 0..self.bus.partitions() {
                if self.store().position(p).await.unwrap() != Some(self.bus.bounds(p).await.unwrap().next) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue 'again;
                }
            }
            return;
        }
    }

    /// Registers a device for `user` of `acme` (APNs tokens are hex, made from `name`).
    pub async fn register(&self, user: &str, platform: Platform, name: &str, readable: &[&str]) -> Registration {
        let mut r = conformance::registration("acme", user, platform, name, readable);
        r.app = if platform == Platform::Apns { BUNDLE_ID.into() } else { PROJECT_ID.into() };
        r.registered_at_ms = now_ms();
        self.registry.register(r.clone()).await.unwrap();
        r
    }

    /// `user` has a live subscription to `channel` (their app is open on it).
    pub async fn looking(&self, user: &str, channel: &str) {
        let key = ChannelKey::new(AccountId::new("acme").unwrap(), ChannelName::new(channel).unwrap());
        self.presence.join("edge-1", &key, PresenceMember { connection_id: format!("conn-{user}"), user: user.into(), info: None }).await.unwrap();
    }

    /// Publishes `data` on `channel` of `acme`; returns the record's id.
    pub async fn publish(&self, channel: &str, data: serde_json::Value) -> MessageId {
        let r = NewRecord {
            account: AccountId::new("acme").unwrap(),
            channel: ChannelName::new(channel).unwrap(),
            data: bytes::Bytes::from(data.to_string()),
            idempotency_key: None,
            published_at_ms: now_ms(),
            trace: None,
        };
        self.bus.append(vec![r]).await.unwrap().remove(0).id
    }

    /// Publishes incident `n` (`{"id":"INC<n>","n":"<n>",…}`).
    pub async fn incident(&self, n: u32) -> MessageId {
        self.publish("incidents", serde_json::json!({ "id": format!("INC{n}"), "n": n.to_string(), "summary": format!("incident {n}") })).await
    }
}

/// The value of a metric line (`name` with its labels, as rendered), 0 when absent.
pub fn metric(m: &Metrics, name: &str) -> f64 {
    m.render().lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

/// How many notifications each device got, by the record's `n`.
pub fn counts(fake: &Fake, device: &str) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for s in fake.seen().into_iter().filter(|s| s.device == device) {
        *out.entry(s.data.get("n").cloned().unwrap_or_default()).or_default() += 1;
    }
    out
}
