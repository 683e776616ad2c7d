//! The raw rdkafka producer rate against a broker: the physical limit of Herald's Kafka path on
//! a machine (issue 18). Same producer settings as the bus (idempotent, `acks=all`,
//! `linger.ms=1`), 100-byte records to one topic, a bounded window of unacknowledged sends; it
//! stops by itself after `RECORDS` records and prints one JSON line: records acknowledged per
//! second and this process's CPU per record.
//!
//! `BROKERS=127.0.0.1:9092 [RECORDS=1000000] [PARTITIONS=1] [WINDOW=10000] cargo run --release -p herald-bus-kafka --example produce_rate`
//! (`loadtest/run_ingest.sh --raw-kafka` starts a tansu broker and runs it.)

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// This process's CPU time (user + system), in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let brokers = std::env::var("BROKERS").map_err(|_| anyhow::anyhow!("set BROKERS=host:port"))?;
    let records = env_or("RECORDS", 1_000_000);
    let partitions = env_or("PARTITIONS", 1) as i32;
    let window = env_or("WINDOW", 10_000) as usize;
    let topic = format!("produce-rate-{:08x}", rand::random::<u32>());

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", &brokers).create()?;
    let created = admin.create_topics(&[NewTopic::new(&topic, partitions, TopicReplication::Fixed(1))], &AdminOptions::new()).await?;
    for r in created {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "30000")
        .set("log_level", "3")
        .create()?;
    let payload = format!(r#"{{"seq":0,"t":0,"pad":"{}"}}"#, "x".repeat(75));
    let (cpu0, started) = (cpu_seconds(), Instant::now());
    let mut in_flight = FuturesUnordered::new();
    let (mut sent, mut acked, mut failed) = (0u64, 0u64, 0u64);
    while acked + failed < records {
        while sent < records && in_flight.len() < window {
            let partition = (sent % partitions as u64) as i32;
            let key = sent.to_string();
            let p = producer.clone();
            let (topic, payload) = (topic.clone(), payload.clone());
            in_flight.push(async move { p.send(FutureRecord::to(&topic).partition(partition).key(&key).payload(&payload), Timeout::After(Duration::from_secs(30))).await });
            sent += 1;
        }
        match in_flight.next().await {
            Some(Ok(_)) => acked += 1,
            Some(Err((e, _))) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("send failed: {e}");
                }
            }
            None => break,
        }
    }
    let (secs, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    println!(
        "{}",
        serde_json::json!({
            "records": records, "acknowledged": acked, "failed": failed, "seconds": (secs * 100.0).round() / 100.0,
            "records_per_sec": (acked as f64 / secs).round(), "producer_cpu_s": cpu,
            "producer_cpu_us_per_record": ((cpu * 1e6 / acked.max(1) as f64) * 100.0).round() / 100.0,
        })
    );
    anyhow::ensure!(failed == 0, "{failed} records were not acknowledged");
    Ok(())
}
