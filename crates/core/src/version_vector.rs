//! `VersionVector`: a position per region, where positions only move forward.
//!
//! Cursors carry one (for every origin region but the issuer, the origin offset just after the
//! last record seen from it), the fan-out hub keeps one per partition (how far each other
//! region's records have arrived), and a subscription resumed from another region's cursor skips
//! what its vector already covers. Merging keeps each region's greatest position, so the order in
//! which positions are learnt never moves one back.

use crate::cursor::RegionName;

/// Per region, the next offset not yet seen. Entries are sorted by region, one per region.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionVector(Vec<(RegionName, u64)>);

impl VersionVector {
    /// No region seen.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// The position for `region`, if any.
    pub fn get(&self, region: &RegionName) -> Option<u64> {
        self.0.binary_search_by(|(r, _)| r.cmp(region)).ok().map(|i| self.0[i].1)
    }

    /// Moves `region`'s position to `next` unless it is already further.
    pub fn advance(&mut self, region: &RegionName, next: u64) {
        match self.0.binary_search_by(|(r, _)| r.cmp(region)) {
            Ok(i) => self.0[i].1 = self.0[i].1.max(next),
            Err(i) => self.0.insert(i, (region.clone(), next)),
        }
    }

    /// Per region, the greater of the two positions.
    pub fn merge(&mut self, other: &VersionVector) {
        for (r, o) in &other.0 {
            self.advance(r, *o);
        }
    }

    /// [`VersionVector::merge`] into a new vector.
    pub fn merged(&self, other: &VersionVector) -> VersionVector {
        let mut out = self.clone();
        out.merge(other);
        out
    }

    /// Whether offset `offset` of `region` lies before this vector's position for it (so it was
    /// seen already). A region the vector does not name covers nothing.
    pub fn covers(&self, region: &RegionName, offset: u64) -> bool {
        self.get(region).is_some_and(|next| offset < next)
    }

    /// The vector without `region`'s entry.
    pub fn without(&self, region: &RegionName) -> VersionVector {
        Self(self.0.iter().filter(|(r, _)| r != region).cloned().collect())
    }

    /// The entries, sorted by region.
    pub fn iter(&self) -> impl Iterator<Item = (&RegionName, u64)> {
        self.0.iter().map(|(r, o)| (r, *o))
    }

    /// Whether no region has a position.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many regions have a position.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl FromIterator<(RegionName, u64)> for VersionVector {
    /// A region named more than once keeps its greatest position.
    fn from_iter<I: IntoIterator<Item = (RegionName, u64)>>(iter: I) -> Self {
        let mut v = VersionVector::new();
        for (r, o) in iter {
            v.advance(&r, o);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(s: &str) -> RegionName {
        RegionName::new(s).unwrap()
    }

    #[test]
    fn positions_only_move_forward_and_stay_sorted() {
        let mut v = VersionVector::new();
        v.advance(&region("us"), 5);
        v.advance(&region("eu"), 3);
        v.advance(&region("us"), 2);
        assert_eq!(v.iter().map(|(r, o)| (r.as_str().to_owned(), o)).collect::<Vec<_>>(), vec![("eu".into(), 3), ("us".into(), 5)]);
        assert_eq!(v.get(&region("ap")), None);
    }

    #[test]
    fn merging_keeps_each_regions_greatest_position_whatever_the_order() {
        let a: VersionVector = [(region("eu"), 7), (region("us"), 1)].into_iter().collect();
        let b: VersionVector = [(region("us"), 4), (region("ap"), 2)].into_iter().collect();
        assert_eq!(a.merged(&b), b.merged(&a));
        let m = a.merged(&b);
        assert_eq!((m.get(&region("eu")), m.get(&region("us")), m.get(&region("ap"))), (Some(7), Some(4), Some(2)));
    }

    #[test]
    fn covers_what_lies_before_the_position_only() {
        let v: VersionVector = [(region("eu"), 10), (region("eu"), 4)].into_iter().collect();
        assert!(v.covers(&region("eu"), 9));
        assert!(!v.covers(&region("eu"), 10));
        assert!(!v.covers(&region("us"), 0));
        assert!(v.without(&region("eu")).is_empty());
    }
}
