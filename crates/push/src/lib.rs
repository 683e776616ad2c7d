//! Mobile push for Herald: a record on a pushable channel reaches the phones of users who may
//! read that channel and are not looking at it (no live subscription: their app is in the
//! background), through APNs and FCM, once per record.
//!
//! The edge keeps clients' device registrations behind the [`herald_core::DeviceRegistry`] seam;
//! this crate holds its two adapters and the worker `herald push` runs (one active per region,
//! by a lease in Redis; a second replica stands by). docs/push.md says how to set it up and what
//! it guarantees.
//!
//! # Layout
//! - [`registry`]: `MemoryRegistry` and `RedisRegistry`, the `DeviceRegistry` adapters.
//! - [`store`]: `RedisStore`, the worker's state in Redis (lease, positions, sent markers, dead
//!   letters), and `connect`, the Redis connection with `[presence]`'s login.
//! - [`rules`]: `[[push.channels]]` applied to a record: whether it pushes, and the
//!   `Notification` it becomes.
//! - [`worker`]: the lease, a task per bus partition, and what happens to each record.
//! - [`send`]: one notification to one device: rate limit, bounded concurrency, retries.
//! - [`apns`], [`fcm`]: the two services' requests, credentials and answers.
//! - [`http`]: one reused HTTP/2 + TLS connection per service origin.
//! - [`metrics`]: the worker's Prometheus registry and its `/metrics` server.
//! - [`testing`] (feature `testing`): fake APNs and FCM servers that check every request as the
//!   real services do, and credentials for them.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod apns;
pub mod fcm;
pub mod http;
pub mod metrics;
pub mod registry;
pub mod rules;
pub mod send;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod worker;

pub use metrics::Metrics;
pub use registry::{MemoryRegistry, RedisRegistry};
pub use rules::{Notification, Rules};
pub use send::{Providers, SendLimits, Sender};
pub use store::RedisStore;
pub use worker::{PushDeps, WorkerSettings, run};

/// The providers `[push]` configures, credentials read and checked (nothing connects): what
/// `herald push` builds at start and under `--check`. An error names the key and the file.
pub fn providers(c: &herald_config::PushConfig) -> Result<Providers, String> {
    Ok(Providers { apns: c.apns.as_ref().map(apns::Apns::new).transpose()?, fcm: c.fcm.as_ref().map(fcm::Fcm::new).transpose()? })
}
