//! A partition reader that never moves past an offset it has not returned.
//!
//! Offsets in a Herald partition are dense: every record Herald writes gets the next offset, and
//! Herald's topics are neither compacted nor written transactionally. A reader that sees offset
//! `n + k` while it expects `n` is looking at a log whose record `n` is not *visible yet*, not at
//! a log without it: a broker may expose a later write before an earlier one. The
//! Kafka-compatible broker used in tests does exactly that when two producers write to one
//! partition at once (it reserves offsets first and stores the batches afterwards, and a fetch
//! lists whatever batches are stored), and a reader that took the later record moved past the
//! earlier one for good: acknowledged records never reached subscribers (issue 23).
//!
//! [`GaplessReader`] wraps any [`PartitionReader`]: on an offset jump it throws the records
//! after the hole away, moves the inner reader back to the first missing offset and reads
//! again, until the hole fills. Only a hole that stays for `confirm_after` (a compacted or
//! damaged log, records removed by hand) is reported, once, as [`BusError::Gap`], after which
//! the reader continues behind it: the caller counts it, alerts and stops promising that its
//! history is complete.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bus::{BusError, PartitionReader};
use crate::record::Record;

/// How long a hole may stay before it is reported as a gap, by default.
pub const DEFAULT_CONFIRM_AFTER: Duration = Duration::from_secs(5);

/// A reader that returns every offset from its position on, in order, without holes.
pub struct GaplessReader {
    inner: Box<dyn PartitionReader>,
    next: u64,
    confirm_after: Duration,
    /// The first missing offset and when the hole was first seen.
    hole: Option<(u64, Instant)>,
}

impl GaplessReader {
    /// Wraps `inner`, which is positioned where the wrapper starts.
    pub fn new(inner: Box<dyn PartitionReader>, confirm_after: Duration) -> Self {
        let next = inner.position();
        Self { inner, next, confirm_after, hole: None }
    }
}

#[async_trait]
impl PartitionReader for GaplessReader {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Arc<Record>>, BusError> {
        // Each read again costs the broker a fetch: back off while the hole stays.
        let mut pause = Duration::from_millis(5);
        loop {
            let batch = self.inner.next_batch(max).await?;
            let mut out = Vec::with_capacity(batch.len());
            let mut jump = None;
            for r in batch {
                if r.offset < self.next {
                    continue; // a re-delivery from before a seek
                }
                if r.offset > self.next {
                    jump = Some(r.offset);
                    break;
                }
                self.next += 1;
                out.push(r);
            }
            let Some(seen) = jump else {
                if !out.is_empty() {
                    self.hole = None;
                    return Ok(out);
                }
                continue;
            };
            // Records from `self.next` up to `seen` are not visible (yet).
            let first_seen = match self.hole {
                Some((at, since)) if at == self.next => since,
                _ => {
                    let now = Instant::now();
                    self.hole = Some((self.next, now));
                    now
                }
            };
            if out.is_empty() && first_seen.elapsed() >= self.confirm_after {
                let from = self.next;
                self.next = seen;
                self.hole = None;
                self.inner.seek(seen);
                return Err(BusError::Gap { from, to: seen });
            }
            // Read again from the first missing record; what came after it comes again.
            self.inner.seek(self.next);
            if !out.is_empty() {
                return Ok(out);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    fn position(&self) -> u64 {
        self.next
    }

    fn seek(&mut self, offset: u64) {
        self.next = offset;
        self.hole = None;
        self.inner.seek(offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cursor::RegionName;
    use crate::names::{AccountId, ChannelName};
    use crate::record::MessageId;
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    /// A broker that stores records in any order, like one that reserves offsets first and
    /// writes the batches afterwards: a fetch returns the stored records at or after the
    /// position, whatever is missing before them.
    #[derive(Clone, Default)]
    struct OutOfOrderLog(Arc<Mutex<BTreeSet<u64>>>);

    impl OutOfOrderLog {
        fn store(&self, offset: u64) {
            self.0.lock().unwrap().insert(offset);
        }
    }

    struct ListingReader {
        log: OutOfOrderLog,
        position: u64,
    }

    fn record(offset: u64) -> Arc<Record> {
        Arc::new(Record {
            partition: 0,
            offset,
            account: AccountId::new("acme").unwrap(),
            channel: ChannelName::new("c").unwrap(),
            id: MessageId::generate(1),
            published_at_ms: 1,
            data: bytes::Bytes::from_static(b"{}"),
            origin_region: RegionName::new("r").unwrap(),
            origin_offset: offset,
            origin_epoch: None,
            trace: None,
        })
    }

    #[async_trait]
    impl PartitionReader for ListingReader {
        async fn next_batch(&mut self, max: usize) -> Result<Vec<Arc<Record>>, BusError> {
            loop {
                let stored: Vec<u64> = self.log.0.lock().unwrap().range(self.position..).take(max).copied().collect();
                if let Some(&last) = stored.last() {
                    // Like a Kafka consumer: the position moves past whatever was returned.
                    self.position = last + 1;
                    return Ok(stored.into_iter().map(record).collect());
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        fn position(&self) -> u64 {
            self.position
        }
        fn seek(&mut self, offset: u64) {
            self.position = offset;
        }
    }

    fn offsets(b: &[Arc<Record>]) -> Vec<u64> {
        b.iter().map(|r| r.offset).collect()
    }

    #[tokio::test]
    async fn a_plain_reader_skips_a_record_stored_after_a_later_one() {
        // The cause of issue 23, deterministically: offsets 0 and 1 reserved by two writers,
        // 1 stored first. A reader that trusts the broker moves past 0 for good.
        let log = OutOfOrderLog::default();
        log.store(1);
        let mut plain = ListingReader { log: log.clone(), position: 0 };
        assert_eq!(offsets(&plain.next_batch(10).await.unwrap()), vec![1]);
        log.store(0);
        log.store(2);
        assert_eq!(offsets(&plain.next_batch(10).await.unwrap()), vec![2], "record 0 is never returned");
    }

    #[tokio::test]
    async fn the_gapless_reader_waits_for_a_record_stored_after_a_later_one() {
        let log = OutOfOrderLog::default();
        log.store(1);
        log.store(2);
        let mut r = GaplessReader::new(Box::new(ListingReader { log: log.clone(), position: 0 }), Duration::from_secs(60));
        let filler = {
            let log = log.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                log.store(0);
            })
        };
        let mut got = Vec::new();
        while got.len() < 3 {
            got.extend(offsets(&r.next_batch(10).await.unwrap()));
        }
        filler.await.unwrap();
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!(r.position(), 3);
    }

    #[tokio::test]
    async fn records_before_a_hole_are_returned_and_the_hole_is_read_again() {
        let log = OutOfOrderLog::default();
        for o in [0, 1, 3, 4] {
            log.store(o);
        }
        let mut r = GaplessReader::new(Box::new(ListingReader { log: log.clone(), position: 0 }), Duration::from_secs(60));
        assert_eq!(offsets(&r.next_batch(10).await.unwrap()), vec![0, 1]);
        assert_eq!(r.position(), 2);
        log.store(2);
        assert_eq!(offsets(&r.next_batch(10).await.unwrap()), vec![2, 3, 4]);
    }

    #[tokio::test]
    async fn a_hole_that_stays_is_reported_once_as_a_gap_and_reading_goes_on_behind_it() {
        let log = OutOfOrderLog::default();
        for o in [0, 4, 5] {
            log.store(o);
        }
        let mut r = GaplessReader::new(Box::new(ListingReader { log: log.clone(), position: 0 }), Duration::from_millis(50));
        assert_eq!(offsets(&r.next_batch(10).await.unwrap()), vec![0]);
        match r.next_batch(10).await {
            Err(BusError::Gap { from: 1, to: 4 }) => {}
            other => panic!("expected the gap 1..4, got {:?}", other.map(|b| offsets(&b))),
        }
        assert_eq!(offsets(&r.next_batch(10).await.unwrap()), vec![4, 5]);
    }
}
