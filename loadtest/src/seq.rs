//! Exact loss and duplicate counting from a publisher's sequence numbers.
//!
//! A publisher numbers its records 0, 1, 2, … on each channel. A subscriber that was listening
//! before the first one (or resumed from a cursor before it) must see each number exactly once
//! and in order. [`SeqCheck`] counts what breaks that: a jump forward is a gap (records lost, or
//! at best late), a number already passed is a duplicate (or a record out of order), and once the
//! publisher's count is known, whatever never arrived at the end is lost too.

/// The sequence of one publisher as seen by one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqCheck {
    /// The next number expected.
    pub next: u64,
    /// Records skipped by a jump forward.
    pub gaps: u64,
    /// Records whose number was already passed.
    pub dups: u64,
    /// Records accepted (new, in order).
    pub received: u64,
}

impl Default for SeqCheck {
    fn default() -> Self {
        Self::new(0)
    }
}

impl SeqCheck {
    /// Expecting `first` next.
    pub fn new(first: u64) -> Self {
        SeqCheck { next: first, gaps: 0, dups: 0, received: 0 }
    }

    /// Counts record `seq`: true if it is new (its latency counts), false for a duplicate.
    pub fn see(&mut self, seq: u64) -> bool {
        if seq < self.next {
            self.dups += 1;
            return false;
        }
        self.gaps += seq - self.next;
        self.next = seq + 1;
        self.received += 1;
        true
    }

    /// Records after the last one seen, when the publisher sent `published` in all.
    pub fn missing_tail(&self, published: u64) -> u64 {
        published.saturating_sub(self.next)
    }

    /// Everything lost when the publisher sent `published`: the gaps and the missing tail.
    pub fn lost(&self, published: u64) -> u64 {
        self.gaps + self.missing_tail(published)
    }

    /// Has everything up to `published`.
    pub fn complete(&self, published: u64) -> bool {
        self.next >= published
    }
}

/// Several publishers (a chat room's members), indexed by number.
#[derive(Debug, Clone, Default)]
pub struct PerPublisher {
    pub seqs: Vec<SeqCheck>,
}

impl PerPublisher {
    pub fn new(publishers: usize) -> Self {
        PerPublisher { seqs: vec![SeqCheck::default(); publishers] }
    }

    /// Counts `seq` from publisher `from`; false for a duplicate or an unknown publisher.
    pub fn see(&mut self, from: usize, seq: u64) -> bool {
        self.seqs.get_mut(from).is_some_and(|s| s.see(seq))
    }

    pub fn gaps(&self) -> u64 {
        self.seqs.iter().map(|s| s.gaps).sum()
    }

    pub fn dups(&self) -> u64 {
        self.seqs.iter().map(|s| s.dups).sum()
    }

    pub fn received(&self) -> u64 {
        self.seqs.iter().map(|s| s.received).sum()
    }

    /// Lost when publisher `i` sent `published[i]`.
    pub fn lost(&self, published: &[u64]) -> u64 {
        self.seqs.iter().zip(published).map(|(s, &p)| s.lost(p)).sum()
    }

    pub fn complete(&self, published: &[u64]) -> bool {
        self.seqs.iter().zip(published).all(|(s, &p)| s.complete(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_is_clean() {
        let mut s = SeqCheck::new(0);
        assert!((0..100).all(|n| s.see(n)));
        assert_eq!((s.gaps, s.dups, s.received, s.lost(100)), (0, 0, 100, 0));
        assert!(s.complete(100));
    }

    #[test]
    fn gaps_duplicates_and_tail() {
        let mut s = SeqCheck::new(0);
        for n in [0, 1, 2, 5, 6, 6, 3, 7] {
            s.see(n);
        }
        // 3 and 4 skipped (3 arrived late: a duplicate by position), 6 twice.
        assert_eq!(s.gaps, 2);
        assert_eq!(s.dups, 2);
        assert_eq!(s.received, 6);
        assert_eq!(s.next, 8);
        // The publisher sent 10: 8 and 9 never came.
        assert_eq!(s.missing_tail(10), 2);
        assert_eq!(s.lost(10), 4);
        assert!(!s.complete(10));
    }

    #[test]
    fn a_missing_first_record_is_lost() {
        let mut s = SeqCheck::new(0);
        s.see(1);
        assert_eq!(s.gaps, 1);
        let mut nothing = SeqCheck::new(0);
        assert_eq!(nothing.lost(3), 3);
        assert!(nothing.see(0));
    }

    #[test]
    fn per_publisher() {
        let mut p = PerPublisher::new(3);
        for (from, seq) in [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (1, 1), (2, 2)] {
            p.see(from, seq);
        }
        assert!(!p.see(9, 0), "an unknown publisher is not counted as received");
        assert_eq!((p.received(), p.dups(), p.gaps()), (6, 1, 1));
        assert_eq!(p.lost(&[2, 2, 3]), 1);
        assert!(p.complete(&[2, 2, 3]));
        assert!(!p.complete(&[3, 2, 3]));
    }
}
