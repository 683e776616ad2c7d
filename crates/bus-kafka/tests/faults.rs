//! The Kafka bus while the broker stalls (SIGSTOP), found by the chaos run (docs/reliability.md):
//! an append abandoned mid-produce must not leave its idempotency key answered as a duplicate of
//! a record that was never written, and a producer fenced after its messages timed out must be
//! replaced, so publishing recovers when the broker does.

use bytes::Bytes;
use std::process::Command;
use std::time::Duration;

use herald_bus_kafka::testing as broker;
use herald_bus_kafka::{KafkaBus, KafkaBusConfig};
use herald_core::{AccountId, Bus, ChannelName, NewRecord, RegionName};

fn config(broker: &broker::Broker, topic: &str) -> KafkaBusConfig {
    let mut c = KafkaBusConfig::new(broker.addr.clone(), RegionName::new("test").unwrap());
    c.topic = topic.to_owned();
    c.partitions = 1;
    c.timeout = Duration::from_secs(2);
    c
}

fn record(key: Option<&str>, n: u32) -> NewRecord {
    NewRecord {
        account: AccountId::new("acme").unwrap(),
        channel: ChannelName::new("c").unwrap(),
        data: Bytes::from(format!("{{\"n\":{n}}}")),
        idempotency_key: key.map(str::to_owned),
        published_at_ms: herald_core::now_ms(),
        trace: None,
    }
}

fn signal(broker: &broker::Broker, sig: &str) {
    assert!(Command::new("kill").args([sig, &broker.pid().to_string()]).status().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_keyed_append_leaves_no_placeholder_behind() {
    let broker = broker::Broker::start();
    let bus = KafkaBus::connect(config(&broker, &broker::unique_topic("abandon"))).await.expect("connect");
    // The partition's keys are read back once, before anything stalls.
    bus.append(vec![record(Some("k0"), 0)]).await.expect("first keyed append");
    signal(&broker, "-STOP");
    let abandoned = tokio::time::timeout(Duration::from_millis(500), bus.append(vec![record(Some("k1"), 1)])).await;
    assert!(abandoned.is_err(), "the append waits on the stopped broker and is dropped");
    signal(&broker, "-CONT");
    // The backend retries the same key: it gets a real position, never a duplicate of nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let a = loop {
        match bus.append(vec![record(Some("k1"), 1)]).await {
            Ok(a) => break a.into_iter().next().unwrap(),
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "the retry never succeeded: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_ne!(a.offset, u64::MAX, "answered with a placeholder: {a:?}");
    let mut r = bus.open(0, a.offset).await.unwrap();
    let got = r.next_batch(1).await.unwrap();
    assert_eq!(got[0].id, a.id, "the acknowledged position holds the record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_recovers_after_the_broker_stalls_longer_than_the_message_timeout() {
    let broker = broker::Broker::start();
    let bus = KafkaBus::connect(config(&broker, &broker::unique_topic("stall"))).await.expect("connect");
    bus.append(vec![record(None, 0)]).await.expect("append before the stall");
    signal(&broker, "-STOP");
    // Writes time out (message.timeout.ms = 2 s) while the broker is stopped for 6 s.
    let stalled = tokio::spawn({
        let mut n = 0;
        let bus = std::sync::Arc::new(bus);
        let b = bus.clone();
        async move {
            let until = tokio::time::Instant::now() + Duration::from_secs(6);
            while tokio::time::Instant::now() < until {
                n += 1;
                let _ = b.append(vec![record(None, n)]).await;
            }
            bus
        }
    });
    tokio::time::sleep(Duration::from_secs(6)).await;
    signal(&broker, "-CONT");
    let bus = stalled.await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match bus.append(vec![record(None, 10_000)]).await {
            Ok(a) => {
                assert_ne!(a[0].offset, u64::MAX);
                break;
            }
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "publishing never recovered after the stall: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
