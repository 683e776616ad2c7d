//! Resume positions.
//!
//! A [`Cursor`] is what a client stores and hands back in `since`. It names, per origin region, the
//! position just after the last record the client has seen, within one [`Epoch`] of the log. The
//! string form is `c1.<epoch>.<region>.<offset>[.<region>.<offset>…]`, made only of URL-safe
//! characters so it fits in a query string and an SSE `id:` line unescaped.

use std::fmt;
use std::sync::Arc;

use crate::version_vector::VersionVector;

/// Why a cursor string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// The string is not of the documented form.
    #[error("not a Herald cursor: {0}")]
    Malformed(&'static str),
}

/// One generation of a log. A log that is reset gets a new epoch, so that old cursors are
/// recognised as meaningless instead of silently pointing at other records.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Epoch(Arc<str>);

impl Epoch {
    /// Validates an epoch string (`[0-9a-z]{1,32}`).
    pub fn new(s: &str) -> Result<Self, CursorError> {
        if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()) {
            return Err(CursorError::Malformed("epoch must be 1-32 characters of 0-9 a-z"));
        }
        Ok(Self(s.into()))
    }

    /// A fresh random epoch, for a log that starts empty.
    pub fn random() -> Self {
        let n: u64 = rand::random();
        Self(format!("{n:x}").into())
    }

    /// The epoch as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Epoch({})", &self.0)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A region's name (`[a-z0-9-]{1,32}`, not all digits).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionName(Arc<str>);

impl RegionName {
    /// Validates a region name.
    pub fn new(s: &str) -> Result<Self, CursorError> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.bytes().all(|b| b.is_ascii_digit());
        if !ok {
            return Err(CursorError::Malformed("region must be 1-32 characters of a-z 0-9 -, not all digits"));
        }
        Ok(Self(s.into()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RegionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegionName({})", &self.0)
    }
}

/// Read from config files as a string, checked like [`RegionName::new`] at parse time.
impl<'de> serde::Deserialize<'de> for RegionName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RegionName::new(&s).map_err(|e| serde::de::Error::custom(format!("region {s:?}: {e}")))
    }
}

impl fmt::Display for RegionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A resume position.
///
/// `issuer` is the **issuing** region and `next` the offset just after the last record seen in
/// that region's log (all origins together); `epoch` is that log's epoch. `origins` names for
/// each *other* origin region the origin offset just after the last record from it that was
/// seen: that is what lets another region resume the cursor exactly
/// (docs/multi-region.md). For the issuing region's own records the local position doubles as
/// their origin position: no record of its own lies between the two.
///
/// String form: `c1.<epoch>.<region>.<offset>` with one entry; `c2.<epoch>.<issuer>.<offset>
/// [.<region>.<offset>…]` with more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The issuing region's log generation.
    pub epoch: Epoch,
    /// The issuing region.
    pub issuer: RegionName,
    /// The next local offset in the issuer's log.
    pub next: u64,
    /// For every other origin region, the next origin offset (never names the issuer).
    pub origins: VersionVector,
}

impl Cursor {
    /// A single-region cursor.
    pub fn single(epoch: Epoch, region: RegionName, next_offset: u64) -> Self {
        Self { epoch, issuer: region, next: next_offset, origins: VersionVector::new() }
    }

    /// A cursor issued by `region` at local position `next`, having seen other origins up to
    /// `origins` (an entry for the issuer itself is left out).
    pub fn with_origins(epoch: Epoch, region: RegionName, next: u64, origins: &VersionVector) -> Self {
        let origins = origins.without(&region);
        Self { epoch, issuer: region, next, origins }
    }

    /// The issuing region and its local position.
    pub fn issuer(&self) -> (&RegionName, u64) {
        (&self.issuer, self.next)
    }

    /// The other origins' positions.
    pub fn origins(&self) -> &VersionVector {
        &self.origins
    }

    /// Every region's position: the issuer's local one and the other origins'.
    pub fn positions(&self) -> VersionVector {
        let mut v = self.origins.clone();
        v.advance(&self.issuer, self.next);
        v
    }

    /// The position for `region`, if the cursor has one.
    pub fn offset_for(&self, region: &RegionName) -> Option<u64> {
        if *region == self.issuer { Some(self.next) } else { self.origins.get(region) }
    }

    /// The oldest of several cursors of one stream: for a list of per-channel cursors (SSE and
    /// long-poll resume every channel of a request from one position), the position from which
    /// none of them misses a record. Cursors of the first one's epoch and issuer are merged
    /// entry by entry: the smallest issuer offset, and each other origin's smallest offset where
    /// every cursor names that origin (an origin a cursor does not name filters nothing, so it is
    /// left out). Cursors of another epoch or issuer cannot be ordered against it and are
    /// ignored. `None` for an empty list.
    pub fn earliest(cursors: &[Cursor]) -> Option<Cursor> {
        let first = cursors.first()?;
        let same: Vec<&Cursor> = cursors.iter().filter(|c| c.epoch == first.epoch && c.issuer == first.issuer).collect();
        let next = same.iter().map(|c| c.next).min().unwrap_or(0);
        let origins: VersionVector = first
            .origins
            .iter()
            .filter_map(|(r, _)| same.iter().map(|c| c.origins.get(r)).collect::<Option<Vec<u64>>>().map(|v| (r.clone(), v.into_iter().min().unwrap_or(0))))
            .collect();
        Some(Cursor { epoch: first.epoch.clone(), issuer: first.issuer.clone(), next, origins })
    }

    /// Parses the string form.
    pub fn parse(s: &str) -> Result<Self, CursorError> {
        if s.len() > 1024 {
            return Err(CursorError::Malformed("cursor too long"));
        }
        let mut parts = s.split('.');
        let version = parts.next();
        if version != Some("c1") && version != Some("c2") {
            return Err(CursorError::Malformed("cursor must start with 'c1.' or 'c2.'"));
        }
        let epoch = Epoch::new(parts.next().ok_or(CursorError::Malformed("missing epoch"))?)?;
        let mut positions: Vec<(RegionName, u64)> = Vec::new();
        while let Some(region) = parts.next() {
            let region = RegionName::new(region)?;
            let offset = parts
                .next()
                .ok_or(CursorError::Malformed("region without offset"))?
                .parse::<u64>()
                .map_err(|_| CursorError::Malformed("offset is not a number"))?;
            if positions.iter().any(|(r, _)| *r == region) {
                return Err(CursorError::Malformed("region named twice"));
            }
            positions.push((region, offset));
        }
        let mut positions = positions.into_iter();
        let Some((issuer, next)) = positions.next() else {
            return Err(CursorError::Malformed("cursor names no region"));
        };
        let origins: VersionVector = positions.collect();
        if version == Some("c1") && !origins.is_empty() {
            return Err(CursorError::Malformed("a c1 cursor names one region"));
        }
        if version == Some("c2") && origins.is_empty() {
            return Err(CursorError::Malformed("a c2 cursor names the issuer and at least one other region"));
        }
        Ok(Self { epoch, issuer, next, origins })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = if self.origins.is_empty() { "c1" } else { "c2" };
        write!(f, "{version}.{}.{}.{}", self.epoch, self.issuer, self.next)?;
        for (r, o) in self.origins.iter() {
            write!(f, ".{r}.{o}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_of_several_cursors_misses_nothing_any_of_them_would_see() {
        let c = |s: &str| Cursor::parse(s).unwrap();
        assert_eq!(Cursor::earliest(&[c("c1.e.a.40"), c("c1.e.a.12"), c("c1.e.a.30")]), Some(c("c1.e.a.12")));
        assert_eq!(Cursor::earliest(&[c("c2.e.a.40.b.7.c.9"), c("c2.e.a.50.b.3.c.11")]), Some(c("c2.e.a.40.b.3.c.9")));
        // An origin one cursor does not name filters nothing: it is left out.
        assert_eq!(Cursor::earliest(&[c("c2.e.a.40.b.7"), c("c1.e.a.45")]), Some(c("c1.e.a.40")));
        // Another epoch or issuer cannot be ordered against the first: ignored.
        assert_eq!(Cursor::earliest(&[c("c1.e.a.40"), c("c1.f.a.2"), c("c1.e.b.1")]), Some(c("c1.e.a.40")));
        assert_eq!(Cursor::earliest(&[]), None);
    }

    #[test]
    fn cursors_round_trip_through_their_string_form() {
        let c = Cursor::single(Epoch::new("8f2a").unwrap(), RegionName::new("eu-west").unwrap(), 42);
        assert_eq!(c.to_string(), "c1.8f2a.eu-west.42");
        assert_eq!(Cursor::parse(&c.to_string()).unwrap(), c);
        // The issuer comes first; the other origins follow in region order.
        let v = Cursor::parse("c2.e.b.7.c.9.a.3").unwrap();
        assert_eq!(v.issuer(), (&RegionName::new("b").unwrap(), 7));
        assert_eq!(v.to_string(), "c2.e.b.7.a.3.c.9");
        let origins: VersionVector = [(RegionName::new("c").unwrap(), 9), (RegionName::new("a").unwrap(), 3)].into_iter().collect();
        let w = Cursor::with_origins(Epoch::new("e").unwrap(), RegionName::new("b").unwrap(), 7, &origins);
        assert_eq!(w, v);
        assert_eq!(Cursor::with_origins(Epoch::new("e").unwrap(), RegionName::new("b").unwrap(), 7, &VersionVector::new()).to_string(), "c1.e.b.7");
    }

    #[test]
    fn malformed_cursors_are_refused() {
        for bad in ["", "c1", "c1.e", "c2.e.a.1", "c1.e.a.1.b.2", "c3.e.a.1.b.2", "c2.e.a.1.a.2", "c1.E.a.1", "c1.e.a", "c1.e.a.x", "c1.e.a.1.a.2", "c1.e.1.1", "c1.e.a.-1"] {
            assert!(Cursor::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
