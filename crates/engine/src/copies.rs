//! Recognising a second copy of a record in a partition, so that it never reaches a client.
//!
//! A record can be written to a partition twice while keeping its identity:
//! - a **replicated** record, when a replicator restarts after writing a copy it had not seen
//!   acknowledged: both copies carry the same origin region and origin offset. A link copies an
//!   origin's partition in order, so in the target partition the origin offsets of one origin
//!   only grow, except for such copies: a record whose origin offset is below the origin's
//!   position so far is a copy ([`is_replica_copy`]).
//! - a **keyed** record (published with an idempotency key, or turned from a source record,
//!   whose key is its source position), when two nodes, or one node before and after a restart,
//!   append it: both copies carry the same message id, derived from the account and the key
//!   ([`KeyedIds`]).
//!
//! The hub drops such copies before fan-out, and a replay drops them too, so clients that do not
//! dedupe still see each record once.

use std::collections::{HashMap, VecDeque};

use herald_core::{MessageId, Record, RegionName, VersionVector};

/// Whether `r` is a second copy of a replicated record: another origin's record whose origin
/// offset is below that origin's position in `seen` (origin, next origin offset).
pub fn is_replica_copy(seen: &VersionVector, r: &Record, local: &RegionName) -> bool {
    &r.origin_region != local && seen.covers(&r.origin_region, r.origin_offset)
}

/// Moves `seen`'s position for `r`'s origin past it (records of the local region are not tracked).
pub fn note_origin(seen: &mut VersionVector, r: &Record, local: &RegionName) {
    if &r.origin_region != local {
        seen.advance(&r.origin_region, r.origin_offset + 1);
    }
}

/// Whether a message id was derived from an idempotency key (the Kafka bus's keyed ids start
/// with `K`; generated ids start with a digit, their millisecond timestamp).
pub fn is_keyed(id: &MessageId) -> bool {
    id.as_str().starts_with('K')
}

/// The keyed message ids seen in one partition recently, with the offset of their first copy.
/// Bounded by a time window and a count, like the bus's idempotency window.
pub struct KeyedIds {
    first: HashMap<MessageId, u64>,
    order: VecDeque<(MessageId, u64)>,
    window_ms: u64,
    cap: usize,
}

impl KeyedIds {
    /// Ids are kept for `window_ms` (by publish time) and at most `cap` of them.
    pub fn new(window_ms: u64, cap: usize) -> Self {
        Self { first: HashMap::new(), order: VecDeque::new(), window_ms, cap }
    }

    /// Notes `r`; true when it is a later copy of a keyed record already noted.
    pub fn note(&mut self, r: &Record, now_ms: u64) -> bool {
        if !is_keyed(&r.id) {
            return false;
        }
        if let Some(&first) = self.first.get(&r.id) {
            return first < r.offset;
        }
        self.first.insert(r.id.clone(), r.offset);
        self.order.push_back((r.id.clone(), r.published_at_ms));
        while let Some((id, at)) = self.order.front() {
            if self.order.len() <= self.cap && now_ms.saturating_sub(*at) <= self.window_ms {
                break;
            }
            self.first.remove(id);
            self.order.pop_front();
        }
        false
    }

    /// Whether a copy of `r` with a lower offset was noted.
    pub fn has_earlier_copy(&self, r: &Record) -> bool {
        is_keyed(&r.id) && self.first.get(&r.id).is_some_and(|&first| first < r.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::{AccountId, ChannelName};

    fn rec(offset: u64, id: &str, origin: &str, origin_offset: u64) -> Record {
        Record {
            partition: 0,
            offset,
            account: AccountId::new("acme").unwrap(),
            channel: ChannelName::new("c").unwrap(),
            id: MessageId::from_stored(id).unwrap(),
            published_at_ms: 1_000,
            data: bytes::Bytes::from_static(b"{}"),
            origin_region: RegionName::new(origin).unwrap(),
            origin_offset,
            origin_epoch: None,
            trace: None,
        }
    }

    #[test]
    fn a_replicated_record_below_its_origins_position_is_a_copy() {
        let local = RegionName::new("b").unwrap();
        let mut seen = VersionVector::new();
        for (offset, oo) in [(0, 10), (1, 11), (2, 12)] {
            let r = rec(offset, "01A", "a", oo);
            assert!(!is_replica_copy(&seen, &r, &local));
            note_origin(&mut seen, &r, &local);
        }
        // The replicator restarted and wrote 11 and 12 again, then went on with 13.
        assert!(is_replica_copy(&seen, &rec(3, "01A", "a", 11), &local));
        assert!(is_replica_copy(&seen, &rec(4, "01A", "a", 12), &local));
        assert!(!is_replica_copy(&seen, &rec(5, "01A", "a", 13), &local));
        // Local records are never copies by origin.
        assert!(!is_replica_copy(&seen, &rec(6, "01A", "b", 0), &local));
    }

    #[test]
    fn a_keyed_id_seen_again_at_a_later_offset_is_a_copy_and_generated_ids_never_are() {
        let mut ids = KeyedIds::new(60_000, 100);
        assert!(!ids.note(&rec(0, "KABC", "a", 0), 1_000));
        assert!(ids.note(&rec(5, "KABC", "a", 5), 1_000));
        assert!(ids.has_earlier_copy(&rec(5, "KABC", "a", 5)));
        assert!(!ids.has_earlier_copy(&rec(0, "KABC", "a", 0)), "the first copy is not a copy");
        assert!(!ids.note(&rec(6, "01ABC", "a", 6), 1_000));
        assert!(!ids.note(&rec(7, "01ABC", "a", 7), 1_000), "generated ids are unique by construction");
    }

    #[test]
    fn keyed_ids_are_forgotten_after_the_window_and_past_the_cap() {
        let mut ids = KeyedIds::new(10_000, 2);
        ids.note(&rec(0, "K1", "a", 0), 1_000);
        ids.note(&rec(1, "K2", "a", 1), 1_000);
        ids.note(&rec(2, "K3", "a", 2), 1_000);
        assert!(!ids.has_earlier_copy(&rec(9, "K1", "a", 9)), "past the cap");
        assert!(ids.has_earlier_copy(&rec(9, "K3", "a", 9)));
        let mut ids = KeyedIds::new(10_000, 100);
        ids.note(&rec(0, "K1", "a", 0), 1_000);
        ids.note(&rec(1, "K2", "a", 1), 20_000);
        assert!(!ids.has_earlier_copy(&rec(9, "K1", "a", 9)), "past the window");
    }
}
