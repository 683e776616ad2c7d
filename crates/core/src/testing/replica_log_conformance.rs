//! The behaviour every [`ReplicaLog`] adapter must show: what the replicator relies on to copy
//! each record exactly once. Call [`run_all`] with a fresh bus.

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

use crate::bus::BusError;
use crate::cursor::{Epoch, RegionName};
use crate::names::{AccountId, ChannelName};
use crate::record::{MessageId, NewRecord, Record, now_ms};
use crate::replica::{ReplicaLog, SCAN_WINDOW};

/// A generous bound for "this should happen": the suite checks behaviour, not speed.
const PATIENCE: Duration = Duration::from_secs(20);

fn region(name: &str) -> RegionName {
    RegionName::new(name).unwrap()
}

/// Records as the replicator reads them from `origin`'s log: local records there, at origin
/// offsets `offsets`, of `account`, which lives in `partition`.
fn originals(account: &str, partition: u32, origin: &RegionName, offsets: std::ops::Range<u64>) -> Vec<Arc<Record>> {
    let published = now_ms() - 60_000;
    offsets
        .map(|o| {
            Arc::new(Record {
                partition,
                offset: o,
                account: AccountId::new(account).unwrap(),
                channel: ChannelName::new(&format!("ch-{}", o % 3)).unwrap(),
                id: MessageId::generate(published + o),
                published_at_ms: published + o,
                data: Bytes::from(format!("{{\"o\":{o}}}")),
                origin_region: origin.clone(),
                origin_offset: o,
                origin_epoch: None,
                trace: None,
            })
        })
        .collect()
}

fn local(account: &str, n: usize) -> Vec<NewRecord> {
    (0..n)
        .map(|i| NewRecord {
            account: AccountId::new(account).unwrap(),
            channel: ChannelName::new("local").unwrap(),
            data: Bytes::from(i.to_string()),
            idempotency_key: None,
            published_at_ms: now_ms(),
            trace: None,
        })
        .collect()
}

/// Runs every check. Each uses its own accounts and origin regions, so one bus may serve them
/// all.
pub async fn run_all(log: Arc<dyn ReplicaLog>) {
    copies_keep_their_identity_and_carry_their_origin(log.clone()).await;
    the_read_back_is_the_greatest_origin_offset_per_origin(log.clone()).await;
    the_read_back_looks_past_one_scan_window(log.clone()).await;
    a_copy_larger_than_the_scan_window_is_read_back_whole(log.clone()).await;
    an_empty_copy_appends_nothing(log.clone()).await;
    copies_into_a_missing_partition_are_refused(log.clone()).await;
}

/// A copy keeps account, channel, data, id and publish time, lands in the partition asked for
/// at dense offsets after what was there, carries its origin region, origin offset and the
/// origin log's epoch, and wakes a reader already waiting at the end.
pub async fn copies_keep_their_identity_and_carry_their_origin(log: Arc<dyn ReplicaLog>) {
    let account = "conf-rep-copy";
    let p = log.partition_of(&AccountId::new(account).unwrap());
    let origin = region("conf-far");
    let origin_epoch = Epoch::random();
    let next = log.bounds(p).await.expect("bounds").next;
    let mut reader = log.open(p, next).await.expect("open at the end");
    let records = originals(account, p, &origin, 100..105);
    let offsets = log.append_replicated(p, &records, &origin_epoch).await.expect("copy");
    assert_eq!(offsets.len(), records.len(), "one offset per copy");
    assert!(offsets[0] >= next, "copies are appended after what the partition held");
    for w in offsets.windows(2) {
        assert_eq!(w[1], w[0] + 1, "copies of one call get dense offsets, in the order given");
    }
    let mut got = Vec::new();
    while got.len() < records.len() {
        let batch = tokio::time::timeout(PATIENCE, reader.next_batch(10)).await.expect("the waiting reader sees the copies").expect("read");
        got.extend(batch.into_iter().filter(|r| r.account.as_str() == account));
    }
    for ((copy, original), offset) in got.iter().zip(&records).zip(&offsets) {
        assert_eq!((copy.partition, copy.offset), (p, *offset));
        assert_eq!(copy.id, original.id, "a copy keeps its message id");
        assert_eq!(copy.published_at_ms, original.published_at_ms, "a copy keeps its publish time");
        assert_eq!(copy.account, original.account);
        assert_eq!(copy.channel, original.channel);
        assert_eq!(copy.data, original.data);
        assert_eq!(copy.origin_region, origin);
        assert_eq!(copy.origin_offset, original.offset);
        assert_eq!(copy.origin_epoch.as_ref(), Some(&origin_epoch), "a copy names the origin log's epoch");
    }
}

/// `last_origin_offset` is `None` for an origin the partition never got a copy from, and the
/// greatest origin offset copied from that origin as soon as the copy is acknowledged, whatever
/// other origins and local records were appended since.
pub async fn the_read_back_is_the_greatest_origin_offset_per_origin(log: Arc<dyn ReplicaLog>) {
    let account = "conf-rep-last";
    let p = log.partition_of(&AccountId::new(account).unwrap());
    let (a, b) = (region("conf-last-a"), region("conf-last-b"));
    let epoch = Epoch::random();
    assert_eq!(log.last_origin_offset(p, &a).await.expect("read back"), None, "nothing copied from a yet");
    log.append_replicated(p, &originals(account, p, &a, 0..3), &epoch).await.expect("copy");
    assert_eq!(log.last_origin_offset(p, &a).await.expect("read back"), Some(2));
    log.append_replicated(p, &originals(account, p, &b, 50..52), &epoch).await.expect("copy");
    log.append(local(account, 3)).await.expect("append");
    assert_eq!(log.last_origin_offset(p, &a).await.expect("read back"), Some(2), "other origins and local records do not count");
    assert_eq!(log.last_origin_offset(p, &b).await.expect("read back"), Some(51));
    for from in (3..30).step_by(9) {
        log.append_replicated(p, &originals(account, p, &a, from..from + 9), &epoch).await.expect("copy");
        assert_eq!(log.last_origin_offset(p, &a).await.expect("read back"), Some(from + 8), "an acknowledged copy is read back at once");
    }
    let other = (p + 1) % log.partitions();
    if other != p {
        assert_eq!(log.last_origin_offset(other, &b).await.expect("read back"), None, "the read-back is per partition");
    }
}

/// The last copy from an origin is found even when more than [`SCAN_WINDOW`] records were
/// appended after it.
pub async fn the_read_back_looks_past_one_scan_window(log: Arc<dyn ReplicaLog>) {
    let account = "conf-rep-deep";
    let p = log.partition_of(&AccountId::new(account).unwrap());
    let origin = region("conf-deep");
    log.append_replicated(p, &originals(account, p, &origin, 7..10), &Epoch::random()).await.expect("copy");
    let after = SCAN_WINDOW as usize + 200;
    for _ in 0..after / 200 {
        log.append(local(account, 200)).await.expect("append");
    }
    assert_eq!(log.last_origin_offset(p, &origin).await.expect("read back"), Some(9));
}

/// One call copying more than [`SCAN_WINDOW`] records (the replicator's batches are smaller, but
/// a broker may store them as one) is read back up to its last record.
pub async fn a_copy_larger_than_the_scan_window_is_read_back_whole(log: Arc<dyn ReplicaLog>) {
    let account = "conf-rep-large";
    let p = log.partition_of(&AccountId::new(account).unwrap());
    let origin = region("conf-large");
    let n = SCAN_WINDOW + SCAN_WINDOW / 2;
    let offsets = log.append_replicated(p, &originals(account, p, &origin, 0..n), &Epoch::random()).await.expect("copy");
    assert_eq!(offsets.len() as u64, n);
    assert_eq!(log.last_origin_offset(p, &origin).await.expect("read back"), Some(n - 1));
}

/// Copying nothing appends nothing and answers with no offsets.
pub async fn an_empty_copy_appends_nothing(log: Arc<dyn ReplicaLog>) {
    let p = log.partition_of(&AccountId::new("conf-rep-empty").unwrap());
    let before = log.bounds(p).await.expect("bounds").next;
    assert!(log.append_replicated(p, &[], &Epoch::random()).await.expect("copy").is_empty());
    assert_eq!(log.bounds(p).await.expect("bounds").next, before);
}

/// A partition the log does not have is refused, for copies and for the read-back.
pub async fn copies_into_a_missing_partition_are_refused(log: Arc<dyn ReplicaLog>) {
    let missing = log.partitions();
    let records = originals("conf-rep-missing", missing, &region("conf-missing"), 0..1);
    assert!(matches!(log.append_replicated(missing, &records, &Epoch::random()).await, Err(BusError::NoPartition(_))));
    assert!(matches!(log.last_origin_offset(missing, &region("conf-missing")).await, Err(BusError::NoPartition(_))));
}
