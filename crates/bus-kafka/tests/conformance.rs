//! The Kafka bus against a real broker: the same conformance suites (bus, replica log) as the
//! in-memory bus.

use std::sync::Arc;
use std::time::Duration;

use herald_bus_kafka::testing as broker;
use herald_bus_kafka::{KafkaBus, KafkaBusConfig};
use herald_core::testing::{bus_conformance, replica_log_conformance};
use herald_core::{Bus, BusError, RegionName};

fn config(broker: &broker::Broker, topic: &str) -> KafkaBusConfig {
    let mut c = KafkaBusConfig::new(broker.addr.clone(), RegionName::new("test").unwrap());
    c.topic = topic.to_owned();
    c.partitions = 4;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_bus_passes_the_bus_conformance_suite() {
    let broker = broker::Broker::start();
    let bus = KafkaBus::connect(config(&broker, &broker::unique_topic("conf"))).await.expect("connect");
    bus_conformance::run_all(Arc::new(bus)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_bus_passes_the_replica_log_conformance_suite() {
    let broker = broker::Broker::start();
    let bus = KafkaBus::connect(config(&broker, &broker::unique_topic("replica"))).await.expect("connect");
    replica_log_conformance::run_all(Arc::new(bus)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_topic_agree_on_the_epoch_and_a_new_topic_gets_a_new_one() {
    let broker = broker::Broker::start();
    let topic = broker::unique_topic("epoch");
    let (a, b) = tokio::join!(KafkaBus::connect(config(&broker, &topic)), KafkaBus::connect(config(&broker, &topic)));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.epoch(), b.epoch());
    assert_eq!(a.partitions(), 4);
    let again = KafkaBus::connect(config(&broker, &topic)).await.unwrap();
    assert_eq!(again.epoch(), a.epoch(), "a restart keeps the epoch");
    let other = KafkaBus::connect(config(&broker, &broker::unique_topic("epoch"))).await.unwrap();
    assert_ne!(other.epoch(), a.epoch());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_reported_unavailable_not_hung() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut c = KafkaBusConfig::new(format!("127.0.0.1:{port}"), RegionName::new("test").unwrap());
    c.timeout = Duration::from_secs(2);
    let r = tokio::time::timeout(Duration::from_secs(30), KafkaBus::connect(c)).await.expect("connect gives up in bounded time");
    assert!(matches!(r, Err(BusError::Unavailable(_))));
}
