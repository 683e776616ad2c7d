//! `[push]`: mobile push through APNs and FCM (docs/push.md): the providers' credentials
//! (`[push.apns]`, `[push.fcm]`), which channels push and how a record becomes a notification
//! (`[[push.channels]]`), and the worker's limits.
//!
//! Every value is checked when the file is read: a bad template, JSON pointer, channel pattern,
//! key id or endpoint is a parse error that names its key (and the line), so `herald push
//! --check` finds it without connecting anywhere. The credentials' files (the `.p8` key, the
//! service account JSON) are read by `herald push` itself, also under `--check`.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::ConfigError;
use herald_core::ChannelPattern;

/// `[push]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// Key prefix in the region's Redis (the `[presence]` one) for registrations, positions,
    /// sent markers, the lease and the dead letters.
    pub prefix: String,
    /// Requests in flight to APNs and FCM together, at most.
    pub concurrency: usize,
    /// Notifications one device may get per minute (a token bucket of this size, refilled over a
    /// minute); beyond it a notification is dropped and counted (`failed{reason="rate_limited"}`).
    pub per_device_per_minute: u32,
    /// Retry budget: attempts per notification, the first included (429, 5xx, connection errors).
    pub max_attempts: u32,
    /// Retry budget: seconds a notification may spend in retries before it is dead-lettered.
    pub max_retry_secs: u64,
    /// Seconds the worker's lease lasts without renewal: a standby takes over this long after
    /// the active worker died.
    pub lease_ttl_secs: u64,
    /// Seconds a "sent" marker (record, device) is kept, so that a restart skips what was sent.
    pub sent_marker_ttl_secs: u64,
    /// Presence members read per channel when deciding who is looking at it.
    pub presence_limit: usize,
    /// Dead letters kept (a Redis stream, trimmed to about this length).
    pub dead_letter_max: u64,
    /// Records in flight per partition (they complete out of order; the stored position only
    /// moves past records whose sends have all completed).
    pub window: usize,
    /// Apple Push Notification service (token-based auth).
    pub apns: Option<ApnsConfig>,
    /// Firebase Cloud Messaging HTTP v1 (a service account).
    pub fcm: Option<FcmConfig>,
    /// The pushable channels; the first entry whose pattern matches a record's channel applies.
    pub channels: Vec<PushChannelConfig>,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            prefix: "herald:push:".into(),
            concurrency: 256,
            per_device_per_minute: 30,
            max_attempts: 5,
            max_retry_secs: 300,
            lease_ttl_secs: 10,
            sent_marker_ttl_secs: 7 * 24 * 3600,
            presence_limit: 10_000,
            dead_letter_max: 100_000,
            window: 64,
            apns: None,
            fcm: None,
            channels: Vec::new(),
        }
    }
}

/// `[push.apns]`: token-based (`.p8` key) authentication to APNs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsConfig {
    /// The `.p8` signing key from Apple's developer account (PEM, PKCS#8, P-256).
    pub key_file: PathBuf,
    /// The key's 10-character id (the JWT header's `kid`).
    #[serde(deserialize_with = "apple_id")]
    pub key_id: String,
    /// The 10-character team id (the JWT's `iss`).
    #[serde(deserialize_with = "apple_id")]
    pub team_id: String,
    /// `https://api.push.apple.com` (default) or `https://api.sandbox.push.apple.com`.
    #[serde(default = "apns_endpoint", deserialize_with = "https_origin")]
    pub endpoint: String,
    /// A CA file (PEM) to trust instead of the public roots: for tests against a fake server.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn apns_endpoint() -> String {
    "https://api.push.apple.com".into()
}

/// `[push.fcm]`: FCM HTTP v1 with a Google service account.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    /// The service account's JSON key file (`client_email`, `private_key`, `token_uri`,
    /// `project_id`), from the Firebase console.
    pub service_account_file: PathBuf,
    /// `https://fcm.googleapis.com` (default).
    #[serde(default = "fcm_endpoint", deserialize_with = "https_origin")]
    pub endpoint: String,
    /// A CA file (PEM) to trust instead of the public roots, for the send and token endpoints:
    /// for tests against a fake server.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn fcm_endpoint() -> String {
    "https://fcm.googleapis.com".into()
}

/// How urgent a notification is (`apns-priority` 10 or 5; FCM `HIGH` or `NORMAL`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushPriority {
    /// Delivered at once, waking the device.
    #[default]
    High,
    /// Delivered when convenient for the device's battery.
    Normal,
}

/// `[[push.channels]]`: which records of which channels push, and how they look.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushChannelConfig {
    /// A channel pattern: `incidents`, `incidents:*`, `*`.
    #[serde(deserialize_with = "pattern")]
    pub pattern: ChannelPattern,
    /// Only records whose field at each JSON pointer equals the value (or one of the values)
    /// push: `when = { "/type" = ["created", "assigned"] }`. Empty: every record.
    #[serde(default)]
    pub when: BTreeMap<JsonPointer, OneOrMany>,
    /// The notification's title, a template: `Incident {/id}`.
    #[serde(default)]
    pub title: Option<Template>,
    /// The notification's body, a template.
    pub body: Template,
    /// Extra key/value data for the app, each value a template.
    #[serde(default)]
    pub data: BTreeMap<String, Template>,
    /// Notifications with the same collapse key replace each other on the lock screen
    /// (`apns-collapse-id`, FCM `collapse_key`); a template, e.g. `incident-{/id}`. A key that
    /// renders empty is not set.
    #[serde(default)]
    pub collapse_key: Option<Template>,
    /// `high` (default) or `normal`.
    #[serde(default)]
    pub priority: PushPriority,
    /// Seconds the service keeps trying to reach an offline device (0: now or never).
    #[serde(default = "default_ttl")]
    pub ttl_secs: u64,
}

fn default_ttl() -> u64 {
    3600
}

/// The longest time to live either service accepts (28 days).
pub const MAX_TTL_SECS: u64 = 28 * 24 * 3600;

/// A JSON pointer (`/a/b`, RFC 6901), checked when read.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct JsonPointer(String);

impl JsonPointer {
    /// The pointer text, for `serde_json::Value::pointer`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn parse(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!("{s:?} is not a JSON pointer (it starts with /, e.g. /type)"));
        }
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return Err(format!("{s:?}: ~ must be followed by 0 or 1 (RFC 6901)"));
            }
        }
        Ok(Self(s.to_owned()))
    }
}

impl<'de> Deserialize<'de> for JsonPointer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        JsonPointer::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// One value or a list of values a field may equal.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Any of these.
    Many(Vec<String>),
}

impl OneOrMany {
    /// Whether `v` is one of the values.
    pub fn contains(&self, v: &str) -> bool {
        match self {
            Self::One(one) => one == v,
            Self::Many(many) => many.iter().any(|m| m == v),
        }
    }
}

/// A piece of a [`Template`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePart {
    /// Literal text.
    Text(String),
    /// The record's field at this pointer (a string as it is, a number or boolean as written,
    /// missing or null as nothing, an object or array as its JSON).
    Field(JsonPointer),
}

/// Text with `{/json/pointer}` placeholders; `{{` and `}}` are literal braces. Parsed when read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template(Vec<TemplatePart>);

impl Template {
    /// The pieces, in order.
    pub fn parts(&self) -> &[TemplatePart] {
        &self.0
    }

    /// Parses `{/pointer}` placeholders and `{{`/`}}` escapes.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = s;
        while let Some(i) = rest.find(['{', '}']) {
            text.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(after) = tail.strip_prefix("{{") {
                text.push('{');
                rest = after;
            } else if let Some(after) = tail.strip_prefix("}}") {
                text.push('}');
                rest = after;
            } else if tail.starts_with('}') {
                return Err(format!("{s:?}: a lone }} (write }}}} for a literal brace)"));
            } else {
                let end = tail.find('}').ok_or_else(|| format!("{s:?}: a {{ without its }}"))?;
                let pointer = JsonPointer::parse(&tail[1..end]).map_err(|e| format!("{s:?}: {e} (write {{{{ for a literal brace)"))?;
                if !text.is_empty() {
                    parts.push(TemplatePart::Text(std::mem::take(&mut text)));
                }
                parts.push(TemplatePart::Field(pointer));
                rest = &tail[end + 1..];
            }
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(TemplatePart::Text(text));
        }
        Ok(Self(parts))
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Template::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

fn pattern<'de, D: Deserializer<'de>>(d: D) -> Result<ChannelPattern, D::Error> {
    let s = String::deserialize(d)?;
    ChannelPattern::parse(&s).map_err(|e| serde::de::Error::custom(format!("{s:?} is not a channel pattern: {e}")))
}

fn apple_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.len() == 10 && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
        Ok(s)
    } else {
        Err(serde::de::Error::custom(format!("{s:?}: Apple's key and team ids are 10 characters of A-Z 0-9")))
    }
}

fn https_origin<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    let host = s.strip_prefix("https://").unwrap_or("");
    if host.is_empty() || host.contains(['/', '?', '#', '@']) {
        return Err(serde::de::Error::custom(format!("{s:?} must be https://HOST[:PORT], with no path")));
    }
    Ok(s)
}

/// Reads `[push]` and checks it at once (so the error names the section's keys, with the line).
pub(crate) fn checked<'de, D: Deserializer<'de>>(d: D) -> Result<PushConfig, D::Error> {
    let p = PushConfig::deserialize(d)?;
    p.validate().map_err(serde::de::Error::custom)?;
    Ok(p)
}

impl PushConfig {
    /// Whether pushing is configured at all (some channel is pushable).
    pub fn is_enabled(&self) -> bool {
        !self.channels.is_empty()
    }

    /// Checks ranges and the fields that depend on each other; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, message: String| Err(ConfigError::Invalid { field, message });
        if self.prefix.is_empty() || self.prefix.contains(char::is_whitespace) {
            return bad("push.prefix", "must be non-empty without spaces (e.g. herald:push:)".into());
        }
        if !(1..=10_000).contains(&self.concurrency) {
            return bad("push.concurrency", "must be between 1 and 10000".into());
        }
        if !(1..=6000).contains(&self.per_device_per_minute) {
            return bad("push.per_device_per_minute", "must be between 1 and 6000".into());
        }
        if !(1..=20).contains(&self.max_attempts) {
            return bad("push.max_attempts", "must be between 1 and 20".into());
        }
        if self.max_retry_secs > 86_400 {
            return bad("push.max_retry_secs", "must be at most 86400".into());
        }
        if !(2..=300).contains(&self.lease_ttl_secs) {
            return bad("push.lease_ttl_secs", "must be between 2 and 300".into());
        }
        if !(60..=30 * 86_400).contains(&self.sent_marker_ttl_secs) {
            return bad("push.sent_marker_ttl_secs", "must be between 60 and 2592000 (30 days)".into());
        }
        if !(1..=1_000_000).contains(&self.presence_limit) {
            return bad("push.presence_limit", "must be between 1 and 1000000".into());
        }
        if self.dead_letter_max == 0 {
            return bad("push.dead_letter_max", "must be positive".into());
        }
        if !(1..=10_000).contains(&self.window) {
            return bad("push.window", "must be between 1 and 10000".into());
        }
        if !self.channels.is_empty() && self.apns.is_none() && self.fcm.is_none() {
            return bad("push.channels", "pushable channels need [push.apns] or [push.fcm] (or both)".into());
        }
        for c in &self.channels {
            if c.ttl_secs > MAX_TTL_SECS {
                return bad("push.channels.ttl_secs", format!("must be at most {MAX_TTL_SECS} (28 days)"));
            }
            if let Some(k) = c.data.keys().find(|k| k.is_empty() || ["aps", "from", "message_type"].contains(&k.as_str()) || k.starts_with("google") || k.starts_with("gcm")) {
                return bad("push.channels.data", format!("{k:?} is reserved by APNs or FCM (aps, from, message_type, google*, gcm*)"));
            }
            if c.when.values().any(|v| matches!(v, OneOrMany::Many(m) if m.is_empty())) {
                return bad("push.channels.when", "an empty list matches nothing; remove the condition or give values".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    const GOOD: &str = r#"
[push]
concurrency = 8
[push.apns]
key_file = "/keys/AuthKey.p8"
key_id = "ABC123DEFG"
team_id = "TEAM123456"
[push.fcm]
service_account_file = "/keys/sa.json"
[[push.channels]]
pattern = "incidents"
when = { "/type" = ["created", "assigned"], "/urgency" = "high" }
title = "Incident {/id}"
body = "{/summary} ({/type})"
data = { incident = "{/id}" }
collapse_key = "incident-{/id}"
priority = "high"
ttl_secs = 600
"#;

    #[test]
    fn a_full_push_section_reads_back() {
        let c: Config = toml::from_str(GOOD).unwrap();
        c.validate().unwrap();
        let p = &c.push;
        assert!(p.is_enabled());
        assert_eq!(p.apns.as_ref().unwrap().endpoint, "https://api.push.apple.com");
        assert_eq!(p.fcm.as_ref().unwrap().endpoint, "https://fcm.googleapis.com");
        let ch = &p.channels[0];
        assert!(ch.when[&JsonPointer::parse("/type").unwrap()].contains("assigned"));
        assert!(ch.when[&JsonPointer::parse("/urgency").unwrap()].contains("high"));
        assert_eq!(
            ch.body.parts(),
            [
                TemplatePart::Field(JsonPointer::parse("/summary").unwrap()),
                TemplatePart::Text(" (".into()),
                TemplatePart::Field(JsonPointer::parse("/type").unwrap()),
                TemplatePart::Text(")".into())
            ]
        );
        assert_eq!(ch.ttl_secs, 600);
    }

    #[test]
    fn templates_parse_placeholders_and_escaped_braces() {
        let t = Template::parse("{{x}} {/a/b}!").unwrap();
        assert_eq!(t.parts(), [TemplatePart::Text("{x} ".into()), TemplatePart::Field(JsonPointer::parse("/a/b").unwrap()), TemplatePart::Text("!".into())]);
        for bad in ["{id}", "{/id", "a } b", "{/a~2}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_bad_value_is_a_parse_error_naming_its_key() {
        let cases = [
            ("key_id = \"ABC123DEFG\"", "key_id = \"short\"", "key_id"),
            ("team_id = \"TEAM123456\"", "team_id = \"team123456\"", "team_id"),
            ("pattern = \"incidents\"", "pattern = \"a*b*\"", "pattern"),
            ("title = \"Incident {/id}\"", "title = \"Incident {id}\"", "title"),
            ("collapse_key = \"incident-{/id}\"", "collapse_key = \"incident-{/id\"", "collapse_key"),
            ("\"/urgency\" = \"high\"", "\"urgency\" = \"high\"", "when"),
            ("priority = \"high\"", "priority = \"urgent\"", "priority"),
            ("ttl_secs = 600", "ttl_secs = 9999999", "ttl_secs"),
            ("concurrency = 8", "concurrency = 0", "concurrency"),
            ("data = { incident = \"{/id}\" }", "data = { aps = \"x\" }", "data"),
            ("[push.fcm]\n", "[push.fcm]\nendpoint = \"http://fcm.local\"\n", "endpoint"),
            ("concurrency = 8", "concurency = 8", "concurency"),
        ];
        for (good, bad, key) in cases {
            assert!(GOOD.contains(good), "{good}");
            let text = GOOD.replacen(good, bad, 1);
            let err = toml::from_str::<Config>(&text).expect_err(bad).to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn channels_without_a_provider_are_refused() {
        let err = toml::from_str::<Config>("[[push.channels]]\npattern = \"x\"\nbody = \"b\"\n").expect_err("no provider").to_string();
        assert!(err.contains("push.channels") && err.contains("[push.apns]"), "{err}");
    }

    #[test]
    fn no_push_section_means_push_is_off() {
        let c = Config::default();
        assert!(!c.push.is_enabled());
        c.validate().unwrap();
    }
}
