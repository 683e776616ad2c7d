//! The behaviour every [`Bus`] adapter must show. Call [`run_all`] with a fresh bus; adapters that
//! can be configured with a tiny retention also call [`reading_past_retention_is_refused`].

use bytes::Bytes;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::bus::{Bus, BusError};
use crate::names::{AccountId, ChannelName};
use crate::record::{NewRecord, now_ms};

/// A generous bound for "this should happen": the suite checks behaviour, not speed.
const PATIENCE: Duration = Duration::from_secs(20);

fn rec(account: &str, channel: &str, data: &str, key: Option<&str>) -> NewRecord {
    NewRecord {
        account: AccountId::new(account).unwrap(),
        channel: ChannelName::new(channel).unwrap(),
        data: Bytes::copy_from_slice(data.as_bytes()),
        idempotency_key: key.map(str::to_owned),
        published_at_ms: now_ms(),
        trace: None,
    }
}

/// Runs every check that needs no special configuration. Each check uses its own account names,
/// so one bus may serve them all.
pub async fn run_all(bus: Arc<dyn Bus>) {
    appended_records_read_back_in_order_with_dense_offsets(bus.clone()).await;
    an_accounts_records_share_one_partition(bus.clone()).await;
    a_reader_waits_for_records_appended_later(bus.clone()).await;
    idempotency_keys_yield_one_record_per_account(bus.clone()).await;
    concurrent_appends_get_unique_dense_offsets(bus.clone()).await;
    the_epoch_is_stable_and_bounds_are_consistent(bus.clone()).await;
    a_records_trace_context_reads_back(bus.clone()).await;
}

/// A record's trace context (`traceparent`) is stored with it; a record without one reads back
/// without one.
pub async fn a_records_trace_context_reads_back(bus: Arc<dyn Bus>) {
    let trace = crate::TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let mut traced = rec("conf-trace", "c", "1", None);
    traced.trace = Some(trace);
    let appended = bus.append(vec![traced, rec("conf-trace", "c", "2", None)]).await.expect("append");
    let mut reader = bus.open(appended[0].partition, appended[0].offset).await.expect("open");
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(tokio::time::timeout(PATIENCE, reader.next_batch(2)).await.expect("records arrive").expect("read"));
    }
    assert_eq!(got[0].trace, Some(trace), "the trace context comes back with the record");
    assert_eq!(got[1].trace, None);
}

/// Records appended one after another come back in order, with dense offsets, unchanged.
pub async fn appended_records_read_back_in_order_with_dense_offsets(bus: Arc<dyn Bus>) {
    let account = "conf-order";
    let batch: Vec<_> = (0..50).map(|i| rec(account, "c", &format!("{{\"n\":{i}}}"), None)).collect();
    let appended = bus.append(batch).await.expect("append");
    assert_eq!(appended.len(), 50);
    let part = appended[0].partition;
    for w in appended.windows(2) {
        assert_eq!(w[1].offset, w[0].offset + 1, "offsets of one account are dense and ordered");
        assert_eq!(w[1].partition, part);
    }
    let mut reader = bus.open(part, appended[0].offset).await.expect("open");
    let mut got = Vec::new();
    while got.len() < 50 {
        let batch = tokio::time::timeout(PATIENCE, reader.next_batch(17)).await.expect("records arrive").expect("read");
        assert!(batch.len() <= 17, "next_batch respects max");
        got.extend(batch);
    }
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.offset, appended[i].offset);
        assert_eq!(r.id, appended[i].id);
        assert_eq!(r.account.as_str(), account);
        assert_eq!(r.channel.as_str(), "c");
        assert_eq!(r.data, Bytes::from(format!("{{\"n\":{i}}}")));
        assert_eq!(r.origin_region, bus.region());
    }
    assert_eq!(reader.position(), appended[49].offset + 1);
}

/// All of an account's records land in `partition_of(account)`.
pub async fn an_accounts_records_share_one_partition(bus: Arc<dyn Bus>) {
    for account in ["conf-p-a", "conf-p-b", "conf-p-c", "conf-p-d"] {
        let want = bus.partition_of(&AccountId::new(account).unwrap());
        let appended = bus
            .append(vec![rec(account, "x", "1", None), rec(account, "y", "2", None)])
            .await
            .expect("append");
        assert!(appended.iter().all(|a| a.partition == want), "{account} strayed from its partition");
    }
}

/// `next_batch` on a caught-up reader waits, and returns once a record is appended.
pub async fn a_reader_waits_for_records_appended_later(bus: Arc<dyn Bus>) {
    let account = AccountId::new("conf-wait").unwrap();
    let part = bus.partition_of(&account);
    let next = bus.bounds(part).await.expect("bounds").next;
    let mut reader = bus.open(part, next).await.expect("open");
    let (tx, rx) = tokio::sync::oneshot::channel::<crate::record::MessageId>();
    let waiter = tokio::spawn(async move {
        let want = rx.await.expect("the id arrives");
        // A broker's high watermark may trail a little: older records of the partition can come
        // first. The reader must deliver ours without anything more being appended.
        loop {
            let batch = reader.next_batch(10).await.expect("read");
            if batch.iter().any(|r| r.id == want) {
                return;
            }
        }
    });
    tokio::task::yield_now().await;
    let appended = bus.append(vec![rec("conf-wait", "c", "\"late\"", None)]).await.expect("append");
    tx.send(appended[0].id.clone()).expect("waiter alive");
    tokio::time::timeout(PATIENCE, waiter).await.expect("the reader woke up with the appended record").unwrap();
}

/// The same idempotency key within an account yields one record; other accounts are separate.
pub async fn idempotency_keys_yield_one_record_per_account(bus: Arc<dyn Bus>) {
    let first = bus.append(vec![rec("conf-idem", "c", "1", Some("k1"))]).await.expect("append")[0].clone();
    assert!(!first.duplicate);
    let again = bus.append(vec![rec("conf-idem", "c", "2", Some("k1"))]).await.expect("append")[0].clone();
    assert!(again.duplicate);
    assert_eq!((again.partition, again.offset, &again.id), (first.partition, first.offset, &first.id));
    let in_batch = bus
        .append(vec![rec("conf-idem", "c", "3", Some("k2")), rec("conf-idem", "c", "4", Some("k2"))])
        .await
        .expect("append");
    assert!(!in_batch[0].duplicate && in_batch[1].duplicate, "a key repeated within one batch counts too");
    assert_eq!(in_batch[0].offset, in_batch[1].offset);
    let other = bus.append(vec![rec("conf-idem-other", "c", "5", Some("k1"))]).await.expect("append")[0].clone();
    assert!(!other.duplicate, "keys are per account");
}

/// Many tasks appending at once get unique, dense offsets per partition and lose nothing.
pub async fn concurrent_appends_get_unique_dense_offsets(bus: Arc<dyn Bus>) {
    let account = "conf-conc";
    let part = bus.partition_of(&AccountId::new(account).unwrap());
    let mut tasks = Vec::new();
    for t in 0..8 {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let mut offs = Vec::new();
            for i in 0..25 {
                let a = bus.append(vec![rec(account, "c", &format!("{}", t * 100 + i), None)]).await.expect("append");
                offs.push(a[0].offset);
            }
            offs
        }));
    }
    let mut all = HashSet::new();
    for t in tasks {
        for o in t.await.unwrap() {
            assert!(all.insert(o), "offset {o} handed out twice");
        }
    }
    assert_eq!(all.len(), 200);
    // Every one of them reads back, as a record of this account.
    let min = *all.iter().min().unwrap();
    let max = *all.iter().max().unwrap();
    let mut reader = bus.open(part, min).await.expect("open");
    let mut seen = HashSet::new();
    while reader.position() <= max {
        for r in tokio::time::timeout(PATIENCE, reader.next_batch(100)).await.expect("records").expect("read") {
            if r.account.as_str() == account {
                seen.insert(r.offset);
            }
        }
    }
    assert_eq!(seen, all);
}

/// The epoch does not change while the bus lives, and `bounds` moves with appends.
pub async fn the_epoch_is_stable_and_bounds_are_consistent(bus: Arc<dyn Bus>) {
    let e = bus.epoch();
    let account = AccountId::new("conf-bounds").unwrap();
    let part = bus.partition_of(&account);
    let before = bus.bounds(part).await.expect("bounds");
    assert!(before.low <= before.next);
    let a = bus.append(vec![rec("conf-bounds", "c", "1", None)]).await.expect("append");
    let after = bus.bounds(part).await.expect("bounds");
    assert!(after.next > a[0].offset);
    assert!(after.next > before.next);
    assert_eq!(bus.epoch(), e);
    assert!(matches!(bus.bounds(bus.partitions()).await, Err(BusError::NoPartition(_))));
}

/// For adapters built with a retention of at most `retained` records per partition: once more
/// have been appended, opening at offset 0 fails with `Truncated`, or the first read does.
pub async fn reading_past_retention_is_refused(bus: Arc<dyn Bus>, retained: u64) {
    let account = AccountId::new("conf-retention").unwrap();
    let part = bus.partition_of(&account);
    let batch: Vec<_> = (0..retained * 2 + 5).map(|i| rec("conf-retention", "c", &i.to_string(), None)).collect();
    bus.append(batch).await.expect("append");
    let b = bus.bounds(part).await.expect("bounds");
    assert!(b.low > 0, "old records were dropped");
    let refused = match bus.open(part, 0).await {
        Err(BusError::Truncated { low, .. }) => low == b.low,
        Err(e) => panic!("unexpected error {e}"),
        Ok(mut r) => matches!(r.next_batch(10).await, Err(BusError::Truncated { .. })),
    };
    assert!(refused, "reading from before retention must fail with Truncated");
    let mut r = bus.open(part, b.low).await.expect("open at low");
    let first = r.next_batch(1).await.expect("read at low");
    assert_eq!(first[0].offset, b.low);
}
