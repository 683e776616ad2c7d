//! The incident example end to end against a real broker: drop, project, route by account, a
//! dead-letter topic for malformed records, and a restart that neither loses nor repeats.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_bus_kafka::testing::{Broker, unique_topic};
use herald_bus_memory::{MemoryBus, MemoryBusConfig};
use herald_config::{DropRule, SourceConfig};
use herald_core::{AccountId, Bus, Record, RegionName};
use herald_source::{Source, SourceCounters};

const PATIENCE: Duration = Duration::from_secs(60);

async fn create(brokers: &str, topics: &[&str]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let new: Vec<_> = topics.iter().map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1))).collect();
    admin.create_topics(&new, &AdminOptions::new()).await.unwrap();
}

async fn produce(p: &FutureProducer, topic: &str, value: &str) {
    p.send(FutureRecord::<(), _>::to(topic).payload(value), Duration::from_secs(10)).await.unwrap();
}

fn incident(account: &str, id: &str, ty: &str) -> String {
    format!(r#"{{"account_id":"{account}","entity":"incident","event_type":"{ty}","id":"{id}","incident":{{"title":"disk full","notes":"a long body phones do not need"}}}}"#)
}

/// Every record of `account` on the bus.
async fn records(bus: &Arc<MemoryBus>, account: &str) -> Vec<Arc<Record>> {
    let p = bus.partition_of(&AccountId::new(account).unwrap());
    let next = bus.bounds(p).await.unwrap().next;
    if next == 0 {
        return vec![];
    }
    let mut r = bus.open(p, 0).await.unwrap();
    let mut out = Vec::new();
    while r.position() < next {
        out.extend(r.next_batch(1000).await.unwrap().into_iter().filter(|r| r.account.as_str() == account));
    }
    out
}

async fn wait_for(bus: &Arc<MemoryBus>, account: &str, n: usize) -> Vec<Arc<Record>> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let rs = records(bus, account).await;
        if rs.len() >= n {
            return rs;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {} of {n} records for {account}", rs.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_records_become_thin_events_per_account_and_malformed_ones_go_to_the_dead_letter_topic() {
    let broker = Broker::start();
    let topic = unique_topic("pd.events");
    let dlq = unique_topic("herald.dlq");
    create(&broker.addr, &[&topic, &dlq]).await;
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &broker.addr).create().unwrap();
    produce(&producer, &topic, &incident("acme", "PAM4FGS", "updated")).await;
    produce(&producer, &topic, r#"{"account_id":"acme","entity":"alerts::alert","event_type":"created","id":"AL1"}"#).await;
    produce(&producer, &topic, "this is not json").await;
    produce(&producer, &topic, &incident("beta", "PBX1", "created")).await;
    produce(&producer, &topic, r#"{"entity":"incident","event_type":"created","id":"NOACCT"}"#).await;
    produce(&producer, &topic, &incident("acme", "PAM4FGS", "resolved")).await;

    let config = SourceConfig {
        name: "incidents".into(),
        topic: topic.clone(),
        brokers: None,
        group: Some(unique_topic("group")),
        account: "/account_id".into(),
        channel: "incidents".into(),
        drop: vec![DropRule { field: "/entity".into(), equals: "alerts::alert".into() }],
        keep: [("ent", "/entity"), ("id", "/id"), ("type", "/event_type")].into_iter().map(|(a, b)| (a.to_owned(), b.to_owned())).collect(),
        dead_letter_topic: Some(dlq.clone()),
    };
    let bus = Arc::new(MemoryBus::new(MemoryBusConfig::new(RegionName::new("test").unwrap())));
    let stop = CancellationToken::new();
    let source = Source::new(&config, &broker.addr, &[], bus.clone(), SourceCounters::noop()).unwrap();
    let running = tokio::spawn(source.run(stop.clone()));

    let acme = wait_for(&bus, "acme", 2).await;
    let data: Vec<_> = acme.iter().map(|r| String::from_utf8_lossy(&r.data).into_owned()).collect();
    assert_eq!(data, [r#"{"ent":"incident","id":"PAM4FGS","type":"updated"}"#, r#"{"ent":"incident","id":"PAM4FGS","type":"resolved"}"#]);
    assert!(acme.iter().all(|r| r.channel.as_str() == "incidents"));
    let beta = wait_for(&bus, "beta", 1).await;
    assert_eq!(String::from_utf8_lossy(&beta[0].data), r#"{"ent":"incident","id":"PBX1","type":"created"}"#);

    // The two malformed records are in the dead-letter topic, with their reasons.
    let c: StreamConsumer = ClientConfig::new().set("bootstrap.servers", &broker.addr).set("group.id", "t").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&dlq, 0, Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    let mut reasons = Vec::new();
    for _ in 0..2 {
        let m = tokio::time::timeout(PATIENCE, c.recv()).await.unwrap().unwrap();
        let h = m.headers().unwrap();
        let reason = h.iter().find(|h| h.key == "herald-dlq-reason").and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap();
        reasons.push(reason);
    }
    assert!(reasons[0].contains("not JSON"), "{reasons:?}");
    assert!(reasons[1].contains("account"), "{reasons:?}");

    // Restart: stop (commits), publish more, start again. Nothing lost, nothing repeated.
    stop.cancel();
    running.await.unwrap();
    produce(&producer, &topic, &incident("acme", "PNEW", "created")).await;
    let stop = CancellationToken::new();
    let source = Source::new(&config, &broker.addr, &[], bus.clone(), SourceCounters::noop()).unwrap();
    let running = tokio::spawn(source.run(stop.clone()));
    let acme = wait_for(&bus, "acme", 3).await;
    assert!(String::from_utf8_lossy(&acme[2].data).contains("PNEW"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(records(&bus, "acme").await.len(), 3, "nothing was processed twice after the restart");
    assert_eq!(records(&bus, "beta").await.len(), 1);
    stop.cancel();
    running.await.unwrap();
}
