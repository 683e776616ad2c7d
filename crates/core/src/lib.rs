//! Herald's domain: the names, positions and records everything else talks about, and the two
//! seams that have more than one implementation, [`Bus`] and [`Presence`].
//!
//! # Layout
//! - [`names`]: `AccountId`, `ChannelName`, `ChannelKey` (an account-scoped channel) and the
//!   capability patterns tokens carry. Validation lives here, once.
//! - [`cursor`]: `Epoch`, `RegionName` and `Cursor`, the opaque resume position clients hold.
//! - [`record`]: `NewRecord` (what a publisher hands in), `Record` (what the bus stores) and
//!   `MessageId`.
//! - [`bus`]: the `Bus` trait (a partitioned, append-only log keyed by account) and its errors.
//! - [`gapless`]: `GaplessReader`, which never moves a partition reader past an offset it has not
//!   returned (a broker may expose a later write before an earlier one).
//! - [`presence`]: the `Presence` trait (who is subscribed where, with join/leave events).
//! - `testing` (feature `testing`): the conformance suites every adapter must pass.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bus;
pub mod gapless;
pub mod cursor;
pub mod names;
pub mod presence;
pub mod record;
#[cfg(feature = "testing")]
pub mod testing;

pub use bus::{Bus, BusError, PartitionBounds, PartitionReader, partition_for};
pub use gapless::GaplessReader;
pub use cursor::{Cursor, CursorError, Epoch, RegionName};
pub use names::{AccountId, ChannelKey, ChannelName, ChannelPattern, NameError, Priority};
pub use presence::{Presence, PresenceChange, PresenceError, PresenceEvent, PresenceFeed, PresenceMember, PresenceSnapshot};
pub use record::{Appended, MessageId, NewRecord, Record, now_ms};

/// The account every edge publishes its end-to-end probe records to: region-local, never
/// delivered to clients' metrics or copied to other regions.
pub const PROBE_ACCOUNT: &str = "herald-probe";
