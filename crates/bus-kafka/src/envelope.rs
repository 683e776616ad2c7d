//! How a Herald record maps onto a Kafka message, and back.
//!
//! key = account; value = the JSON payload; headers (version 1):
//! `herald-v` = "1", `herald-ch` = channel, `herald-id` = message id, `herald-ts` = publish time
//! (ms), and for replicated records `herald-or` = origin region, `herald-oo` = origin offset,
//! `herald-oe` = the origin log's epoch; and `traceparent` (W3C trace context) when the publish
//! was traced, the header name Kafka instrumentations use.

use bytes::Bytes;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};

use herald_core::{AccountId, ChannelName, Epoch, MessageId, NewRecord, Record, RegionName, TraceParent};

/// The envelope version this build writes and reads.
pub const VERSION: &str = "1";

pub fn headers(r: &NewRecord, id: &MessageId) -> OwnedHeaders {
    let ts = r.published_at_ms.to_string();
    let h = OwnedHeaders::new_with_capacity(5)
        .insert(Header { key: "herald-v", value: Some(VERSION) })
        .insert(Header { key: "herald-ch", value: Some(r.channel.as_str()) })
        .insert(Header { key: "herald-id", value: Some(id.as_str()) })
        .insert(Header { key: "herald-ts", value: Some(ts.as_str()) });
    with_trace(h, r.trace)
}

/// Adds the `traceparent` header when the record carries a trace context.
fn with_trace(h: OwnedHeaders, trace: Option<TraceParent>) -> OwnedHeaders {
    match trace {
        Some(t) => h.insert(Header { key: "traceparent", value: Some(t.to_string().as_str()) }),
        None => h,
    }
}

/// Headers of a record copied from another region: the same id and publish time, plus its
/// origin region, origin offset and the origin log's epoch.
pub fn replicated_headers(r: &Record, origin_epoch: &Epoch) -> OwnedHeaders {
    let ts = r.published_at_ms.to_string();
    let oo = r.origin_offset.to_string();
    let h = OwnedHeaders::new_with_capacity(8)
        .insert(Header { key: "herald-v", value: Some(VERSION) })
        .insert(Header { key: "herald-ch", value: Some(r.channel.as_str()) })
        .insert(Header { key: "herald-id", value: Some(r.id.as_str()) })
        .insert(Header { key: "herald-ts", value: Some(ts.as_str()) })
        .insert(Header { key: "herald-or", value: Some(r.origin_region.as_str()) })
        .insert(Header { key: "herald-oo", value: Some(oo.as_str()) })
        .insert(Header { key: "herald-oe", value: Some(origin_epoch.as_str()) });
    with_trace(h, r.trace)
}

/// A message id for a keyed record that every node computes alike, so a record appended twice
/// (by two nodes) is still one message to clients. 26 characters, like generated ids.
pub fn keyed_message_id(account: &AccountId, key: &str, ms: u64) -> MessageId {
    // FNV-1a 128-bit over "account\0key": stable across builds and platforms.
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in account.as_str().bytes().chain([0u8]).chain(key.bytes()) {
        h ^= b as u128;
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    let _ = ms;
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut s = String::with_capacity(26);
    s.push('K'); // keyed ids are recognisable
    for i in 0..25 {
        s.push(ALPHABET[((h >> (i * 5)) & 31) as usize] as char);
    }
    MessageId::from_stored(&s).expect("alphanumeric")
}

/// Why a Kafka message is not a Herald record.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// A header is missing or malformed, or the key is not an account.
    #[error("not a Herald v{VERSION} record: {0}")]
    Invalid(&'static str),
}

fn header<'a>(m: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a str> {
    let hs = m.headers()?;
    hs.iter().find(|h| h.key == name).and_then(|h| h.value).and_then(|v| std::str::from_utf8(v).ok())
}

/// Decodes a consumed message.
pub fn decode(m: &BorrowedMessage<'_>, local_region: &RegionName) -> Result<Record, EnvelopeError> {
    if header(m, "herald-v") != Some(VERSION) {
        return Err(EnvelopeError::Invalid("missing or unknown herald-v header"));
    }
    let account = m.key().and_then(|k| std::str::from_utf8(k).ok()).and_then(|k| AccountId::new(k).ok()).ok_or(EnvelopeError::Invalid("key is not an account"))?;
    let channel = header(m, "herald-ch").and_then(|c| ChannelName::new(c).ok()).ok_or(EnvelopeError::Invalid("bad herald-ch"))?;
    let id = header(m, "herald-id").and_then(MessageId::from_stored).ok_or(EnvelopeError::Invalid("bad herald-id"))?;
    let ts = header(m, "herald-ts").and_then(|t| t.parse().ok()).ok_or(EnvelopeError::Invalid("bad herald-ts"))?;
    let offset = m.offset() as u64;
    let (origin_region, origin_offset) = match (header(m, "herald-or"), header(m, "herald-oo")) {
        (Some(r), Some(o)) => (
            RegionName::new(r).map_err(|_| EnvelopeError::Invalid("bad herald-or"))?,
            o.parse().map_err(|_| EnvelopeError::Invalid("bad herald-oo"))?,
        ),
        _ => (local_region.clone(), offset),
    };
    let origin_epoch = match header(m, "herald-oe") {
        Some(e) => Some(Epoch::new(e).map_err(|_| EnvelopeError::Invalid("bad herald-oe"))?),
        None => None,
    };
    Ok(Record {
        partition: m.partition() as u32,
        offset,
        account,
        channel,
        id,
        published_at_ms: ts,
        data: Bytes::copy_from_slice(m.payload().unwrap_or(b"null")),
        origin_region,
        origin_offset,
        origin_epoch,
        // A malformed one is dropped, not an error: tracing never costs a record.
        trace: header(m, "traceparent").and_then(TraceParent::parse),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_ids_are_stable_per_account_and_key() {
        let a = AccountId::new("acme").unwrap();
        let b = AccountId::new("beta").unwrap();
        assert_eq!(keyed_message_id(&a, "k", 1), keyed_message_id(&a, "k", 2));
        assert_ne!(keyed_message_id(&a, "k", 1), keyed_message_id(&b, "k", 1));
        assert_ne!(keyed_message_id(&a, "k1", 1), keyed_message_id(&a, "k2", 1));
        assert_eq!(keyed_message_id(&a, "k", 1).as_str().len(), 26);
    }
}
