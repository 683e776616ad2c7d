//! Conformance suites: every [`crate::Bus`], [`crate::ReplicaLog`] and [`crate::Presence`] adapter
//! runs these in its own tests, so that swapping an adapter cannot change behaviour the edge (or
//! the replicator) relies on. [`pki`] makes test certificates for the TLS links.

pub mod bus_conformance;
pub mod presence_conformance;
pub mod replica_log_conformance;
pub mod pki;
