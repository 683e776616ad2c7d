//! The idempotency window: which keyed records were appended recently, and where they landed.
//!
//! A publisher may send a record with an idempotency key (`NewRecord::idempotency_key`); when the
//! same key of the same account comes again within the window, the bus answers with the first
//! record's position instead of appending again. Both bus adapters keep their keys in an
//! [`IdempotencyWindow`]: the in-memory bus one per partition keyed by `(account, key)`, the
//! Kafka bus one per node keyed by the message id it derives from `(account, key)`.
//!
//! Entries leave in the order they were inserted, once older than the window. A key that is
//! removed (an append that failed) and inserted again gets a fresh place in that order.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use crate::record::Appended;

struct Entry {
    appended: Appended,
    at_ms: u64,
    /// Which insertion this entry is, so a stale place in `order` (the key was removed and
    /// inserted again) is recognised and skipped.
    seq: u64,
}

/// Recently appended keyed records, forgotten once older than the window.
pub struct IdempotencyWindow<K> {
    window_ms: u64,
    map: HashMap<K, Entry>,
    /// Keys in insertion order, with the insertion they stand for.
    order: VecDeque<(u64, K)>,
    next_seq: u64,
}

impl<K: Hash + Eq + Clone> IdempotencyWindow<K> {
    /// An empty window remembering keys for `window`.
    pub fn new(window: Duration) -> Self {
        Self { window_ms: window.as_millis() as u64, map: HashMap::new(), order: VecDeque::new(), next_seq: 0 }
    }

    /// Forgets entries inserted more than the window before `now_ms`, oldest first. An entry
    /// stays while an older insertion ahead of it in the order stays.
    pub fn expire(&mut self, now_ms: u64) {
        while let Some((seq, key)) = self.order.front() {
            match self.map.get(key) {
                Some(e) if e.seq == *seq && now_ms.saturating_sub(e.at_ms) <= self.window_ms => break,
                Some(e) if e.seq == *seq => {
                    let (_, key) = self.order.pop_front().expect("front exists");
                    self.map.remove(&key);
                }
                // Removed, or inserted again later (it has a newer place in the order).
                _ => {
                    self.order.pop_front();
                }
            }
        }
    }

    /// Where the record with `key` landed, if it is remembered.
    pub fn get(&self, key: &K) -> Option<&Appended> {
        self.map.get(key).map(|e| &e.appended)
    }

    /// The remembered position of `key`, to fill in once the append is acknowledged.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut Appended> {
        self.map.get_mut(key).map(|e| &mut e.appended)
    }

    /// Whether `key` is remembered.
    pub fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// Remembers that `key`'s record landed at `appended`, at `at_ms`. A key already remembered
    /// keeps its first position: the call changes nothing and returns false.
    pub fn insert(&mut self, key: K, appended: Appended, at_ms: u64) -> bool {
        if self.map.contains_key(&key) {
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.map.insert(key.clone(), Entry { appended, at_ms, seq });
        self.order.push_back((seq, key));
        true
    }

    /// Forgets `key` (its append failed: a retry must append it).
    pub fn remove(&mut self, key: &K) {
        self.map.remove(key);
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::MessageId;

    fn at(offset: u64) -> Appended {
        Appended { partition: 0, offset, id: MessageId::generate(0), duplicate: false }
    }

    fn window() -> IdempotencyWindow<&'static str> {
        IdempotencyWindow::new(Duration::from_millis(100))
    }

    #[test]
    fn a_key_within_the_window_answers_with_its_first_position() {
        let mut w = window();
        let first = at(7);
        assert!(w.insert("k", first.clone(), 1_000));
        assert!(!w.insert("k", at(8), 1_050), "a repeat does not replace the first position");
        w.expire(1_100);
        assert_eq!(w.get(&"k"), Some(&first));
        assert!(w.get(&"other").is_none());
    }

    #[test]
    fn keys_older_than_the_window_are_forgotten_oldest_first() {
        let mut w = window();
        w.insert("old", at(1), 1_000);
        w.insert("new", at(2), 1_060);
        w.expire(1_101);
        assert!(!w.contains(&"old"));
        assert!(w.contains(&"new"));
        assert_eq!(w.len(), 1);
        w.expire(1_161);
        assert!(w.is_empty());
    }

    #[test]
    fn a_removed_key_can_be_inserted_again_and_expires_from_its_new_time() {
        let mut w = window();
        w.insert("k", at(1), 1_000);
        w.remove(&"k");
        assert!(w.get(&"k").is_none());
        assert!(w.insert("k", at(2), 1_090));
        w.insert("later", at(3), 1_095);
        // The stale first place must neither expire the new entry nor hold up the others.
        w.expire(1_150);
        assert_eq!(w.get(&"k").map(|a| a.offset), Some(2));
        w.expire(1_191);
        assert!(!w.contains(&"k"));
        assert!(w.contains(&"later"));
        w.expire(1_196);
        assert!(w.is_empty());
    }

    #[test]
    fn a_position_filled_in_after_the_append_is_what_a_repeat_gets() {
        let mut w = window();
        w.insert("k", at(u64::MAX), 1_000);
        w.get_mut(&"k").expect("remembered").offset = 42;
        assert_eq!(w.get(&"k").map(|a| a.offset), Some(42));
    }
}
