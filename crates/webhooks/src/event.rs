//! Webhook events: what one record of the presence feed becomes, each with a stable id.
//!
//! A record at `(partition, offset)` of the region's feed topic gives one event with id
//! `<region>:<partition>:<offset>`; a join that took its channel from empty to one member also
//! gives `channel_occupied` with id `…:1`, and a leave that emptied it `channel_vacated` `…:1`.
//! The same record always gives the same events with the same ids, whichever instance reads it
//! and however often, so receivers dedupe by id.

use herald_core::UserInfo;
use serde::{Deserialize, Serialize};

/// The kinds of event (the `type` field; `[[webhooks.endpoints]] events` names them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A client connection (WebSocket or SSE) opened.
    ConnectionOpened,
    /// A client connection closed; `reason` says why.
    ConnectionClosed,
    /// A connection subscribed to a channel.
    PresenceJoin,
    /// A connection left a channel (unsubscribed, disconnected, or its edge died).
    PresenceLeave,
    /// A channel got its first member.
    ChannelOccupied,
    /// A channel lost its last member.
    ChannelVacated,
    /// A publish was refused.
    PublishRejected,
}

impl EventType {
    /// Every type, in the order of `herald_config::WEBHOOK_EVENT_TYPES`.
    pub const ALL: [EventType; 7] = [
        Self::ConnectionOpened,
        Self::ConnectionClosed,
        Self::PresenceJoin,
        Self::PresenceLeave,
        Self::ChannelOccupied,
        Self::ChannelVacated,
        Self::PublishRejected,
    ];

    /// The `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectionOpened => "connection_opened",
            Self::ConnectionClosed => "connection_closed",
            Self::PresenceJoin => "presence_join",
            Self::PresenceLeave => "presence_leave",
            Self::ChannelOccupied => "channel_occupied",
            Self::ChannelVacated => "channel_vacated",
            Self::PublishRejected => "publish_rejected",
        }
    }

    /// The type named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One webhook event, as it appears in a request's `events` array. Fields that do not apply to
/// the type are absent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Stable id, `<region>:<partition>:<offset>[:n]`: the same event always has the same id.
    pub id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When the edge saw it, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The region.
    pub region: String,
    /// The account.
    pub account: String,
    /// The channel (presence and occupancy events; refused publishes, when one concerns a
    /// channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The connection (connection and presence events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// The token's `sub` (connection and presence events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `websocket` or `sse` (connection events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// Why a connection closed (`connection_closed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The channel's member count right after a join or leave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occupancy: Option<u64>,
    /// The user info the authorization proxy gave the connection on connect (presence events of
    /// connections that have some).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<UserInfo>,
    /// The error code of a refused publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The edge node it happened on.
    pub node: String,
}

/// A record of the feed topic, as `herald_bus_kafka::record_value` writes it.
#[derive(Deserialize)]
struct FeedRecord {
    #[serde(rename = "type")]
    kind: String,
    account: String,
    node: String,
    at_ms: u64,
    channel: Option<String>,
    connection_id: Option<String>,
    user: Option<String>,
    transport: Option<String>,
    reason: Option<String>,
    occupancy: Option<u64>,
    code: Option<String>,
    #[serde(default)]
    info: Option<UserInfo>,
}

/// A record that is not a feed record (something else wrote to the topic).
#[derive(Debug, thiserror::Error)]
#[error("not a presence feed record: {0}")]
pub struct NotAFeedRecord(String);

/// The events of the record at `(partition, offset)` of `region`'s feed topic, in order.
pub fn events_of(region: &str, partition: i32, offset: i64, payload: &[u8]) -> Result<Vec<Event>, NotAFeedRecord> {
    let r: FeedRecord = serde_json::from_slice(payload).map_err(|e| NotAFeedRecord(e.to_string()))?;
    let kind = match r.kind.as_str() {
        "join" => EventType::PresenceJoin,
        "leave" => EventType::PresenceLeave,
        other => EventType::parse(other).ok_or_else(|| NotAFeedRecord(format!("unknown type {other:?}")))?,
    };
    let id = format!("{region}:{partition}:{offset}");
    let first = Event {
        id: id.clone(),
        kind,
        at_ms: r.at_ms,
        region: region.to_owned(),
        account: r.account,
        channel: r.channel,
        connection_id: r.connection_id,
        user: r.user,
        transport: r.transport,
        reason: r.reason,
        occupancy: r.occupancy,
        code: r.code,
        info: r.info,
        node: r.node,
    };
    let occupancy_change = match (kind, first.occupancy) {
        (EventType::PresenceJoin, Some(1)) => Some(EventType::ChannelOccupied),
        (EventType::PresenceLeave, Some(0)) => Some(EventType::ChannelVacated),
        _ => None,
    };
    let mut out = Vec::with_capacity(2);
    if let Some(kind) = occupancy_change {
        let second = Event {
            id: format!("{id}:1"),
            kind,
            at_ms: first.at_ms,
            region: first.region.clone(),
            account: first.account.clone(),
            channel: first.channel.clone(),
            connection_id: None,
            user: None,
            transport: None,
            reason: None,
            occupancy: None,
            code: None,
            info: None,
            node: first.node.clone(),
        };
        out.push(first);
        out.push(second);
    } else {
        out.push(first);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::{AccountId, ChannelKey, ChannelName, Connection, FeedEvent, PresenceChange, PresenceEvent, PresenceMember, RegionName};

    fn record(e: &FeedEvent) -> Vec<u8> {
        herald_bus_kafka::record_value(e, "edge-1", &RegionName::new("eu").unwrap(), 1_700_000_000_000).to_string().into_bytes()
    }

    #[test]
    fn the_types_are_the_ones_the_config_accepts() {
        let names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(names, herald_config::WEBHOOK_EVENT_TYPES);
    }

    #[test]
    fn a_first_join_also_occupies_the_channel_with_its_own_stable_id() {
        let event = PresenceEvent {
            channel: ChannelKey::parse("acme/incidents").unwrap(),
            change: PresenceChange::Join,
            member: PresenceMember { connection_id: "c1".into(), user: "ann".into(), info: None },
        };
        let payload = record(&FeedEvent::Presence { event: event.clone(), occupancy: 1 });
        let got = events_of("eu", 3, 41, &payload).unwrap();
        assert_eq!(got.iter().map(|e| (e.id.as_str(), e.kind)).collect::<Vec<_>>(), [("eu:3:41", EventType::PresenceJoin), ("eu:3:41:1", EventType::ChannelOccupied)]);
        assert_eq!((got[0].user.as_deref(), got[0].channel.as_deref(), got[0].occupancy), (Some("ann"), Some("incidents"), Some(1)));
        assert_eq!(got, events_of("eu", 3, 41, &payload).unwrap(), "the same record gives the same events");
        let second = record(&FeedEvent::Presence { event, occupancy: 2 });
        assert_eq!(events_of("eu", 3, 42, &second).unwrap().len(), 1, "a second member occupies nothing");
    }

    #[test]
    fn presence_events_carry_the_members_info_when_it_has_some() {
        let info = herald_core::UserInfo::parse(r#"{"name":"Ann Lee","role":"responder"}"#).unwrap();
        let event = PresenceEvent {
            channel: ChannelKey::parse("acme/incidents").unwrap(),
            change: PresenceChange::Leave,
            member: PresenceMember { connection_id: "c1".into(), user: "ann".into(), info: Some(info.clone()) },
        };
        let got = events_of("eu", 3, 43, &record(&FeedEvent::Presence { event, occupancy: 0 })).unwrap();
        assert_eq!((got[0].kind, got[0].info.as_ref()), (EventType::PresenceLeave, Some(&info)));
        let json = serde_json::to_value(&got[0]).unwrap();
        assert_eq!(json["info"], serde_json::json!({"name":"Ann Lee","role":"responder"}));
        assert!(serde_json::to_value(&got[1]).unwrap().get("info").is_none(), "channel_vacated has no member, so no info");
    }

    #[test]
    fn connection_and_rejection_records_become_one_event_each() {
        let connection = Connection { connection_id: "c9".into(), account: AccountId::new("acme").unwrap(), user: "bob".into(), transport: "sse".into(), opened_at_ms: 1 };
        let closed = events_of("eu", 0, 7, &record(&FeedEvent::ConnectionClosed { connection, reason: "node_gone".into() })).unwrap();
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].kind, closed[0].reason.as_deref(), closed[0].transport.as_deref()), (EventType::ConnectionClosed, Some("node_gone"), Some("sse")));
        let rejected = FeedEvent::PublishRejected { account: AccountId::new("acme").unwrap(), channel: Some(ChannelName::new("chat").unwrap()), code: "rate_limited".into() };
        let r = &events_of("eu", 0, 8, &record(&rejected)).unwrap()[0];
        assert_eq!((r.kind, r.code.as_deref(), r.channel.as_deref(), r.account.as_str()), (EventType::PublishRejected, Some("rate_limited"), Some("chat"), "acme"));
        let json = serde_json::to_value(r).unwrap();
        assert!(json.get("connection_id").is_none(), "fields that do not apply are absent: {json}");
        assert!(events_of("eu", 0, 9, b"{\"type\":\"nonsense\"}").is_err());
    }
}
