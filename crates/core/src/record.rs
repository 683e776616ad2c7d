//! Records: what publishers hand in and what the bus stores.

use bytes::Bytes;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cursor::RegionName;
use crate::names::{AccountId, ChannelName};

/// Milliseconds since the Unix epoch, by the local clock.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A record's stable id: the same on every transport, in every region, after every replay.
/// Clients drop duplicates by it. 26 characters of Crockford base32 (a ULID: 48 bits of
/// milliseconds, 80 random bits), so ids sort roughly by publish time.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MessageId(Arc<str>);

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl MessageId {
    /// A new id for a record published at `ms`.
    pub fn generate(ms: u64) -> Self {
        let rand_part: u128 = rand::random::<u128>() & ((1u128 << 80) - 1);
        let v: u128 = ((ms as u128 & ((1u128 << 48) - 1)) << 80) | rand_part;
        let mut out = [0u8; 26];
        for (i, slot) in out.iter_mut().enumerate() {
            let shift = 125 - 5 * i as i32;
            let idx = if shift >= 0 { (v >> shift) & 31 } else { (v << -shift) & 31 };
            *slot = CROCKFORD[idx as usize];
        }
        Self(std::str::from_utf8(&out).expect("ascii").into())
    }

    /// Wraps an id read back from storage. Ids are opaque; only length and charset are checked.
    pub fn from_stored(s: &str) -> Option<Self> {
        (!s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            .then(|| Self(s.into()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", &self.0)
    }
}

/// A record a publisher hands to the bus.
#[derive(Clone, Debug)]
pub struct NewRecord {
    /// The account; it also picks the partition.
    pub account: AccountId,
    /// The channel within the account.
    pub channel: ChannelName,
    /// The payload: one JSON value, already validated, as its UTF-8 text.
    pub data: Bytes,
    /// When the same key (per account) was used within the idempotency window, the bus returns
    /// the first record's position instead of appending again.
    pub idempotency_key: Option<String>,
    /// Publish time, milliseconds since the Unix epoch.
    pub published_at_ms: u64,
    /// The publish's trace context, when the publisher or the edge traces it: stored with the
    /// record so that its delivery joins the same trace.
    pub trace: Option<crate::TraceParent>,
}

/// A stored record.
#[derive(Clone, Debug)]
pub struct Record {
    /// The partition it lives in.
    pub partition: u32,
    /// Its offset within the partition (0-based, dense).
    pub offset: u64,
    /// The account.
    pub account: AccountId,
    /// The channel within the account.
    pub channel: ChannelName,
    /// The stable message id.
    pub id: MessageId,
    /// Publish time, milliseconds since the Unix epoch.
    pub published_at_ms: u64,
    /// The JSON payload.
    pub data: Bytes,
    /// The region where it was first published.
    pub origin_region: RegionName,
    /// Its offset in the origin region's log (equal to `offset` for local records).
    pub origin_offset: u64,
    /// For a replicated record, the epoch of the origin region's log when it was copied (`None`
    /// for local records, and for copies made before replicators wrote it): a cross-region
    /// resume checks it against the cursor's.
    pub origin_epoch: Option<crate::cursor::Epoch>,
    /// The publish's trace context, as [`NewRecord::trace`] (`None` when it had none, and for
    /// records written before it was stored).
    pub trace: Option<crate::TraceParent>,
}

/// Where an appended record landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The partition.
    pub partition: u32,
    /// The record's offset.
    pub offset: u64,
    /// The record's message id.
    pub id: MessageId,
    /// True when an earlier record with the same idempotency key was returned instead.
    pub duplicate: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_26_crockford_characters_and_sort_by_time() {
        let a = MessageId::generate(1_700_000_000_000);
        let b = MessageId::generate(1_700_000_000_001);
        assert_eq!(a.as_str().len(), 26);
        assert!(a.as_str().bytes().all(|c| CROCKFORD.contains(&c)));
        assert!(a.as_str() < b.as_str());
        assert_ne!(MessageId::generate(5), MessageId::generate(5));
    }
}
