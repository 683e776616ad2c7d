//! Conformance suites: every [`crate::Bus`] and [`crate::Presence`] adapter runs these in its own
//! tests, so that swapping an adapter cannot change behaviour the edge relies on.

pub mod bus_conformance;
pub mod presence_conformance;
