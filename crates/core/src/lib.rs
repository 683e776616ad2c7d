//! Herald's domain: the names, positions and records everything else talks about, and the seams
//! that have more than one implementation: [`Bus`] (with [`ReplicaLog`] for replication
//! targets), [`Presence`], [`Orders`] and [`DeviceRegistry`].
//!
//! # Layout
//! - [`names`]: `AccountId`, `ChannelName`, `ChannelKey` (an account-scoped channel) and the
//!   capability patterns tokens carry. Validation lives here, once. `PROBE_ACCOUNT`, the
//!   region-local account of the edges' probes.
//! - [`cursor`]: `Epoch`, `RegionName` and `Cursor`, the opaque resume position clients hold.
//! - [`version_vector`]: `VersionVector`, a position per region that only moves forward (a
//!   cursor's other origins, the hub's per-partition origin positions).
//! - [`record`]: `NewRecord` (what a publisher hands in), `Record` (what the bus stores) and
//!   `MessageId`; [`trace`]: `TraceParent`, the W3C trace context a record may carry.
//! - [`bus`]: the `Bus` trait (a partitioned, append-only log keyed by account) and its errors.
//! - [`idempotency`]: `IdempotencyWindow`, the recently used idempotency keys both buses keep.
//! - [`replica`]: the `ReplicaLog` trait (what a bus needs to receive copies of other regions'
//!   records) and `scan_last_origin_offset`, the read-back both adapters use.
//! - [`gapless`]: `GaplessReader`, which never moves a partition reader past an offset it has not
//!   returned (a broker may expose a later write before an earlier one).
//! - [`presence`]: the `Presence` trait (who is subscribed where, with join/leave events; which
//!   connections are open), `UserInfo` (what an authorization proxy said about a member) and
//!   `FeedEvent`, what its feed tells backends.
//! - [`orders`]: the `Orders` trait (disconnects and token revocations issued to every edge of
//!   a region, and the revocations standing) and its conformance suite (`orders::conformance`).
//! - [`devices`]: the `DeviceRegistry` trait (which phones belong to which user, for mobile push)
//!   and its conformance suite (`devices::conformance`, feature `testing`).
//! - `testing` (feature `testing`): the conformance suites every adapter must pass.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bus;
pub mod gapless;
pub mod cursor;
pub mod devices;
pub mod idempotency;
pub mod names;
pub mod orders;
pub mod presence;
pub mod record;
pub mod replica;
pub mod version_vector;
pub mod trace;
#[cfg(feature = "testing")]
pub mod testing;

pub use bus::{Bus, BusError, PartitionBounds, PartitionReader, partition_for};
pub use gapless::GaplessReader;
pub use cursor::{Cursor, CursorError, Epoch, RegionName};
pub use devices::{DeviceError, DeviceRegistry, Platform, Registration};
pub use idempotency::IdempotencyWindow;
pub use names::{AccountId, ChannelKey, ChannelName, ChannelPattern, NameError, PERSONAL_PREFIX, PROBE_ACCOUNT, Priority, may_read};
pub use orders::{Disconnect, DisconnectTarget, Order, Orders, OrdersError, RevokeTarget, Revocation, TokenFacts};
pub use presence::{Connection, FeedEvent, NODE_GONE, Presence, PresenceChange, PresenceError, PresenceEvent, PresenceFeed, PresenceMember, PresenceSnapshot, UserConnection, UserInfo, UserInfoError};
pub use record::{Appended, MessageId, NewRecord, Record, now_ms};
pub use replica::ReplicaLog;
pub use version_vector::VersionVector;
pub use trace::TraceParent;
