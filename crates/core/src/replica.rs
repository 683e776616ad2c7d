//! The replica log: what a region's bus must offer to receive copies of other regions' records.
//!
//! The replicator copies partition `p` of a source region's bus into partition `p` of the
//! target's. It keeps no progress of its own: on start and after any error it asks the target
//! for the greatest origin offset of the source region it already holds
//! ([`ReplicaLog::last_origin_offset`]) and continues after it. That only copies nothing twice if
//! the answer covers every copy the target acknowledged before the question, including copies
//! a broker has acknowledged but not yet shown to readers (docs/kafka.md, "The delivery
//! guarantee"): [`scan_last_origin_offset`] reads up to the partition's end through the bus's
//! own (gapless) readers, which wait for such holes to fill. Both adapters pass
//! `testing::replica_log_conformance`.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

use crate::bus::{Bus, BusError, PartitionBounds};
use crate::cursor::{Epoch, RegionName};
use crate::record::Record;

/// How many records [`scan_last_origin_offset`] reads per step back from a partition's end.
pub const SCAN_WINDOW: u64 = 1000;

/// A bus that can hold copies of other regions' records: a replication target.
#[async_trait]
pub trait ReplicaLog: Bus {
    /// Appends copies of `records` (read from another region's partition of the same number),
    /// in the order given, to the end of `partition`, and returns their offsets here. Each copy
    /// keeps the record's account, channel, data, message id and publish time, and its origin
    /// region and origin offset (a local record of the source region: that region and its
    /// offset there), and names `origin_epoch`, the epoch of the log it was read from. Copies
    /// are not checked against idempotency keys. On an error some of the copies may have been
    /// appended: [`Self::last_origin_offset`] says which.
    async fn append_replicated(&self, partition: u32, records: &[Arc<Record>], origin_epoch: &Epoch) -> Result<Vec<u64>, BusError>;

    /// The greatest origin offset among the retained records of `partition` whose origin is
    /// `origin` (`None`: there is none). It counts every copy acknowledged by
    /// [`Self::append_replicated`] before the call.
    async fn last_origin_offset(&self, partition: u32, origin: &RegionName) -> Result<Option<u64>, BusError>;
}

/// [`ReplicaLog::last_origin_offset`] for any bus: reads `partition` back from its end in steps
/// of [`SCAN_WINDOW`] records, and answers with the greatest origin offset of `origin` in the
/// latest step that holds any (copies of one origin are appended in origin order). Each read
/// may wait at most `read_timeout` (then [`BusError::Unavailable`]): a hole the bus's reader
/// waits on must not hang the caller.
///
/// A broker may report the end of a partition ([`PartitionBounds::next`]) short of what it
/// acknowledged: the tansu broker used in tests answers with the last batch's *first* offset + 1,
/// so copies sent as one batch would be missed. So every record a read returns counts, also
/// past the reported end, and from the end the scan reads on while records keep coming within
/// `past_end` (at most [`SCAN_WINDOW`] more); `Duration::ZERO` when the bus reports its end
/// exactly.
pub async fn scan_last_origin_offset<B: Bus + ?Sized>(
    bus: &B,
    partition: u32,
    origin: &RegionName,
    read_timeout: Duration,
    past_end: Duration,
) -> Result<Option<u64>, BusError> {
    let PartitionBounds { low, next } = bus.bounds(partition).await?;
    let mut end = next;
    let mut top = true;
    while end > low {
        let start = end.saturating_sub(SCAN_WINDOW).max(low);
        let mut reader = bus.open(partition, start).await?;
        let mut best: Option<u64> = None;
        let mut count = |batch: Vec<Arc<Record>>| {
            for r in batch.iter().filter(|r| &r.origin_region == origin) {
                best = Some(best.map_or(r.origin_offset, |b| b.max(r.origin_offset)));
            }
        };
        while reader.position() < end {
            match tokio::time::timeout(read_timeout, reader.next_batch(SCAN_WINDOW as usize)).await {
                Ok(batch) => count(batch?),
                Err(_) => return Err(BusError::Unavailable(format!("reading partition {partition} from {} timed out", reader.position()))),
            }
        }
        if top && !past_end.is_zero() {
            while reader.position() < end + SCAN_WINDOW {
                match tokio::time::timeout(past_end, reader.next_batch(SCAN_WINDOW as usize)).await {
                    Ok(batch) => count(batch?),
                    Err(_) => break, // nothing more: the end
                }
            }
        }
        top = false;
        if best.is_some() {
            return Ok(best);
        }
        end = start;
    }
    Ok(None)
}
