//! Publish-to-push-request latency (p50/p99) and pushes per second, against the fake APNs and
//! FCM servers, in one process: an in-memory bus, a real Redis (started here), the worker, and
//! the fakes (which check every request as the real services do, so they cost CPU too).
//!
//! Bounded: publishes `PUSH_BENCH_RECORDS` records (default 1000) at `PUSH_BENCH_RATE` records/s
//! (default 50) to one channel read by `PUSH_BENCH_DEVICES` devices (default 100, half APNs,
//! half FCM), waits for every push (at most 120 s) and prints one Markdown table row. Run on a
//! quiet machine, pinned for a per-core figure:
//!
//! ```text
//! taskset -c 0 cargo bench -p herald-push --bench push_latency
//! ```
//!
//! "pushes per CPU-second" divides pushes by the process's CPU time (worker and fakes together,
//! so it understates the worker alone).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use herald_bus_memory::{MemoryBus, MemoryBusConfig};
use herald_core::devices::conformance::registration;
use herald_core::{AccountId, Bus, ChannelName, DeviceRegistry, NewRecord, Platform, RegionName, now_ms};
use herald_presence_memory::MemoryPresence;
use herald_presence_redis::testing::RedisServer;
use herald_push::testing::{BUNDLE_ID, Fake, PROJECT_ID};
use herald_push::{Metrics, PushDeps, RedisRegistry, RedisStore, Rules, SendLimits, Sender, WorkerSettings};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// User + system CPU time of this process, from /proc/self/stat (clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let (records, rate, devices) = (env("PUSH_BENCH_RECORDS", 1000), env("PUSH_BENCH_RATE", 50).max(1), env("PUSH_BENCH_DEVICES", 100));
    let redis = RedisServer::start();
    let conn = herald_push::store::connect(&redis.url(), &Default::default()).unwrap();
    let (apns, fcm) = (Fake::apns().await, Fake::fcm().await);
    let mut config: herald_config::PushConfig = toml::from_str::<herald_config::Config>(
        "[push]\nper_device_per_minute = 6000\n[push.fcm]\nservice_account_file = \"x\"\n[[push.channels]]\npattern = \"incidents\"\nbody = \"{/summary}\"\ndata = { n = \"{/n}\" }\ncollapse_key = \"incident-{/n}\"\n",
    )
    .unwrap()
    .push;
    config.apns = Some(apns.apns_config());
    config.fcm = Some(fcm.fcm_config());
    let mut bus = MemoryBusConfig::new(RegionName::new("bench").unwrap());
    bus.partitions = 4;
    let bus = Arc::new(MemoryBus::new(bus));
    let registry = Arc::new(RedisRegistry::new(conn.clone(), &config.prefix));
    for i in 0..devices {
        let platform = if i % 2 == 0 { Platform::Apns } else { Platform::Fcm };
        let mut r = registration("bench", &format!("user{i}"), platform, &format!("device{i}"), &["incidents"]);
        r.app = if platform == Platform::Apns { BUNDLE_ID.into() } else { PROJECT_ID.into() };
        registry.register(r).await.unwrap();
    }
    let store = RedisStore::new(conn, &config.prefix, &bus.region(), &bus.epoch(), config.dead_letter_max);
    let deps = PushDeps {
        bus: bus.clone(),
        presence: Arc::new(MemoryPresence::new()),
        registry,
        store: store.clone(),
        sender: Arc::new(Sender::new(herald_push::providers(&config).unwrap(), SendLimits::from_config(&config))),
        rules: Rules::new(config.channels.clone()),
        metrics: Arc::new(Metrics::default()),
        settings: WorkerSettings::from_config(&config, "bench".into()),
    };
    let stop = CancellationToken::new();
    let worker = tokio::spawn(herald_push::run(deps, stop.clone()));
    for p in 0..bus.partitions() {
        while store.position(p).await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let account = AccountId::new("bench").unwrap();
    let channel = ChannelName::new("incidents").unwrap();
    let mut published: HashMap<String, Instant> = HashMap::new();
    let (started, cpu_before) = (Instant::now(), cpu_time());
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    for n in 0..records {
        tick.tick().await;
        let data = serde_json::json!({ "n": n.to_string(), "summary": format!("incident {n}") }).to_string();
        published.insert(n.to_string(), Instant::now());
        let r = NewRecord { account: account.clone(), channel: channel.clone(), data: data.into(), idempotency_key: None, published_at_ms: now_ms(), trace: None };
        bus.append(vec![r]).await.unwrap();
    }
    let want = (records * devices) as usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    while apns.count() + fcm.count() < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (elapsed, cpu) = (started.elapsed(), cpu_time().saturating_sub(cpu_before));
    stop.cancel();
    let _ = worker.await;
    let seen: Vec<_> = apns.seen().into_iter().chain(fcm.seen()).collect();
    let mut latencies: Vec<Duration> = seen.iter().filter_map(|s| Some(s.at.duration_since(*published.get(s.data.get("n")?)?))).collect();
    latencies.sort();
    assert!(!latencies.is_empty(), "no push arrived");
    println!("| records | devices | rate (records/s) | pushes | p50 | p99 | pushes/s | pushes per CPU-second |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {records} | {devices} | {rate} | {} of {want} | {:.1} ms | {:.1} ms | {:.0} | {:.0} |",
        seen.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        seen.len() as f64 / elapsed.as_secs_f64(),
        seen.len() as f64 / cpu.as_secs_f64().max(0.01),
    );
    assert!(apns.violations().is_empty() && fcm.violations().is_empty(), "the fakes refused requests");
}
