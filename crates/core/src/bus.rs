//! The bus: a partitioned, append-only log of records, keyed by account.
//!
//! Records of one account always land in one partition ([`partition_for`]), so an account's
//! records keep their order and one offset in that partition is a position for every channel of
//! the account. Two adapters implement [`Bus`]: an in-memory log (the embedded default) and Kafka.
//! Both pass the suite in `testing::bus_conformance`.

use async_trait::async_trait;
use std::sync::Arc;

use crate::cursor::{Epoch, RegionName};
use crate::names::AccountId;
use crate::record::{Appended, NewRecord, Record};

/// What can go wrong talking to the bus.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    /// The bus cannot be reached now; the caller may retry later.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// The requested offset is older than what the partition still holds.
    #[error("offset {requested} is past retention (oldest retained is {low})")]
    Truncated {
        /// The offset asked for.
        requested: u64,
        /// The oldest offset still held.
        low: u64,
    },
    /// Offsets `from..to` stayed missing while later records were there: the log has a hole
    /// (compaction, records removed by hand, a damaged broker). Herald's own topics never have
    /// one, so this is a data-integrity alarm; the reader continues at `to`.
    #[error("offsets {from}..{to} are missing from the partition")]
    Gap {
        /// The first missing offset.
        from: u64,
        /// The offset of the first record after the hole.
        to: u64,
    },
    /// The partition does not exist.
    #[error("no partition {0}")]
    NoPartition(u32),
    /// The bus is shut down.
    #[error("bus closed")]
    Closed,
}

/// The retained range of a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionBounds {
    /// The oldest offset still held.
    pub low: u64,
    /// The offset the next appended record will get.
    pub next: u64,
}

/// Reads one partition forward from an offset.
#[async_trait]
pub trait PartitionReader: Send {
    /// Waits until at least one record at or after the reader's position exists, then returns up
    /// to `max` records in offset order and advances past them. Fails with
    /// [`BusError::Truncated`] when the position has fallen out of retention (the reader then
    /// stays where it is; the caller decides whether to skip ahead with [`Self::seek`]).
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Arc<Record>>, BusError>;

    /// The offset the next returned record will have.
    fn position(&self) -> u64;

    /// Moves the reader to `offset`.
    fn seek(&mut self, offset: u64);

    /// Reads toward `end` (exclusive): the next batch of at most `max` records, of those below
    /// `end` only, or `None` once the reader's position has reached `end`. The loop every
    /// "read the partition up to here" (a seam, the partition's end) is written with:
    /// `while let Some(batch) = reader.next_batch_before(end, 1000).await? { … }`.
    async fn next_batch_before(&mut self, end: u64, max: usize) -> Result<Option<Vec<Arc<Record>>>, BusError> {
        let position = self.position();
        if position >= end {
            return Ok(None);
        }
        let mut batch = self.next_batch(((end - position) as usize).min(max)).await?;
        batch.retain(|r| r.offset < end);
        Ok(Some(batch))
    }
}

/// A partitioned append-only log of records keyed by account.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// The log generation; cursors from another epoch are not positions in this log.
    fn epoch(&self) -> Epoch;

    /// The region whose records this bus holds (the local region).
    fn region(&self) -> RegionName;

    /// How many partitions there are.
    fn partitions(&self) -> u32;

    /// The partition that holds `account`'s records.
    fn partition_of(&self, account: &AccountId) -> u32 {
        partition_for(account, self.partitions())
    }

    /// Appends records, each to its account's partition, and returns where each landed, in the
    /// order given. Records with an idempotency key already used by the same account within the
    /// bus's idempotency window are not appended again: the first record's position is returned
    /// with `duplicate: true`.
    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Appended>, BusError>;

    /// The retained range of a partition.
    async fn bounds(&self, partition: u32) -> Result<PartitionBounds, BusError>;

    /// Opens a reader on `partition` positioned at `from`.
    async fn open(&self, partition: u32, from: u64) -> Result<Box<dyn PartitionReader>, BusError>;
}

/// Shared handle to a bus.
pub type SharedBus = Arc<dyn Bus>;

/// The partition for an account: Kafka's default partitioner (murmur2 of the key, positive,
/// modulo the partition count), so that other producers keying records by account name agree.
pub fn partition_for(account: &AccountId, partitions: u32) -> u32 {
    (murmur2(account.as_str().as_bytes()) & 0x7fff_ffff) % partitions.max(1)
}

/// Kafka's murmur2 (seed 0x9747b28c), as in the Java client's `Utils.murmur2`.
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= (tail[2] as u32) << 16;
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_reference_values() {
        // Reference values from the Java client's test suite (as signed ints).
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32, -58897971);
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }

    #[test]
    fn an_account_always_maps_to_the_same_partition() {
        let a = AccountId::new("acme").unwrap();
        let p = partition_for(&a, 16);
        assert!(p < 16);
        assert_eq!(p, partition_for(&a, 16));
    }
}
