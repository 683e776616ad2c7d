//! Which records push and what the notification says: `[[push.channels]]` applied to a record.

use herald_config::{OneOrMany, PushChannelConfig, PushPriority, Template, TemplatePart};
use herald_core::{ChannelName, Record};
use serde_json::Value;
use std::collections::BTreeMap;

/// Longest title sent (bytes; longer ones are cut at a character boundary and end with `…`).
const MAX_TITLE: usize = 256;
/// Longest body sent (bytes), cut the same way. APNs and FCM refuse payloads over 4 KiB.
const MAX_BODY: usize = 1024;
/// Longest collapse key (APNs allows 64 bytes in `apns-collapse-id`).
const MAX_COLLAPSE: usize = 64;

/// A notification built from one record, the same for every device it goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The title, if the channel has one.
    pub title: Option<String>,
    /// The body.
    pub body: String,
    /// Key/value data for the app.
    pub data: BTreeMap<String, String>,
    /// Replaces an earlier notification with the same key on the lock screen.
    pub collapse_key: Option<String>,
    /// High or normal.
    pub priority: PushPriority,
    /// Seconds the service keeps trying an offline device.
    pub ttl_secs: u64,
}

/// The compiled `[[push.channels]]`, in order.
#[derive(Clone, Debug, Default)]
pub struct Rules(Vec<PushChannelConfig>);

impl Rules {
    /// The rules of `[push]`, first match wins.
    pub fn new(channels: Vec<PushChannelConfig>) -> Self {
        Self(channels)
    }

    /// Whether some rule covers `channel` (records on other channels are never read further).
    pub fn covers(&self, channel: &ChannelName) -> bool {
        self.0.iter().any(|r| r.pattern.matches(channel))
    }

    /// The notification for `record`: `None` when no rule covers its channel, its data is not
    /// JSON, or the first covering rule's `when` does not match.
    pub fn notification(&self, record: &Record) -> Option<Notification> {
        let rule = self.0.iter().find(|r| r.pattern.matches(&record.channel))?;
        let data: Value = serde_json::from_slice(&record.data).ok()?;
        if !rule.when.iter().all(|(pointer, wanted)| field(&data, pointer.as_str()).is_some_and(|v| matches(wanted, &v))) {
            return None;
        }
        Some(Notification {
            title: rule.title.as_ref().map(|t| cut(render(t, &data), MAX_TITLE)),
            body: cut(render(&rule.body, &data), MAX_BODY),
            data: rule.data.iter().map(|(k, t)| (k.clone(), render(t, &data))).collect(),
            collapse_key: rule.collapse_key.as_ref().map(|t| cut_plain(render(t, &data), MAX_COLLAPSE)).filter(|k| !k.is_empty()),
            priority: rule.priority,
            ttl_secs: rule.ttl_secs,
        })
    }
}

fn matches(wanted: &OneOrMany, v: &str) -> bool {
    wanted.contains(v)
}

/// The field at `pointer` as text: a string as it is, null as nothing, anything else as JSON.
fn field(data: &Value, pointer: &str) -> Option<String> {
    match data.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// A template with the record's fields filled in (a missing field is empty).
pub fn render(t: &Template, data: &Value) -> String {
    let mut out = String::new();
    for part in t.parts() {
        match part {
            TemplatePart::Text(s) => out.push_str(s),
            TemplatePart::Field(p) => out.push_str(&field(data, p.as_str()).unwrap_or_default()),
        }
    }
    out
}

fn boundary(s: &str, max: usize) -> usize {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// `s` cut to at most `max` bytes, ending with `…` when cut.
fn cut(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let end = boundary(&s, max - '…'.len_utf8());
    format!("{}…", &s[..end])
}

fn cut_plain(mut s: String, max: usize) -> String {
    let end = boundary(&s, max);
    s.truncate(end);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::{AccountId, MessageId, RegionName};

    fn rules(toml: &str) -> Rules {
        let c: herald_config::Config = toml::from_str(toml).expect("valid config");
        Rules::new(c.push.channels)
    }

    fn record(channel: &str, data: &str) -> Record {
        Record {
            partition: 0,
            offset: 0,
            account: AccountId::new("acme").unwrap(),
            channel: ChannelName::new(channel).unwrap(),
            id: MessageId::generate(1),
            published_at_ms: 1,
            data: bytes::Bytes::from(data.to_owned()),
            origin_region: RegionName::new("eu").unwrap(),
            origin_offset: 0,
            origin_epoch: None,
            trace: None,
        }
    }

    const CONFIG: &str = r#"
[push.fcm]
service_account_file = "sa.json"
[[push.channels]]
pattern = "incidents"
when = { "/type" = ["created", "assigned"] }
title = "Incident {/id}"
body = "{/summary} — {/n} open"
data = { incident = "{/id}", kind = "incident" }
collapse_key = "incident-{/id}"
priority = "normal"
[[push.channels]]
pattern = "chat:*"
body = "{/text}"
"#;

    #[test]
    fn a_matching_record_becomes_its_notification() {
        let r = rules(CONFIG);
        let n = r.notification(&record("incidents", r#"{"type":"created","id":"PAM4","summary":"DB down","n":3}"#)).unwrap();
        assert_eq!(n.title.as_deref(), Some("Incident PAM4"));
        assert_eq!(n.body, "DB down — 3 open");
        assert_eq!(n.data["incident"], "PAM4");
        assert_eq!(n.data["kind"], "incident");
        assert_eq!(n.collapse_key.as_deref(), Some("incident-PAM4"));
        assert_eq!(n.priority, PushPriority::Normal);
        assert_eq!(n.ttl_secs, 3600);
    }

    #[test]
    fn records_the_condition_or_the_patterns_exclude_do_not_push() {
        let r = rules(CONFIG);
        assert!(r.notification(&record("incidents", r#"{"type":"resolved","id":"PAM4"}"#)).is_none());
        assert!(r.notification(&record("incidents", r#"{"id":"PAM4"}"#)).is_none(), "a missing field matches nothing");
        assert!(r.notification(&record("billing", r#"{"type":"created"}"#)).is_none());
        assert!(r.notification(&record("incidents", "not json")).is_none());
        assert!(!r.covers(&ChannelName::new("billing").unwrap()));
        let chat = r.notification(&record("chat:9", r#"{"text":"hi"}"#)).unwrap();
        assert_eq!((chat.title, chat.body.as_str(), chat.collapse_key), (None, "hi", None));
    }

    #[test]
    fn long_texts_are_cut_at_a_character_boundary() {
        let r = rules(CONFIG);
        let long = "é".repeat(2000);
        let n = r.notification(&record("chat:1", &format!(r#"{{"text":"{long}"}}"#))).unwrap();
        assert!(n.body.len() <= MAX_BODY && n.body.ends_with('…'));
        assert_eq!(cut_plain("ab".repeat(40), MAX_COLLAPSE).len(), 64);
    }
}
