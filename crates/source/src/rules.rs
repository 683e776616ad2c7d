//! The rule language: where the account is, which channel, what to drop, what to keep.

use bytes::Bytes;
use serde_json::{Map, Value};

use herald_config::SourceConfig;
use herald_core::{AccountId, ChannelName};

/// A rule that cannot be compiled (reported at start, naming the source and the field).
#[derive(Debug, thiserror::Error)]
#[error("source {source_name}: {field}: {message}")]
pub struct RuleError {
    /// The source.
    pub source_name: String,
    /// The field (`account`, `channel`, `drop`, `keep`).
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Why one record could not be turned into a Herald record (it goes to the dead-letter topic).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// The value is not JSON.
    #[error("value is not JSON")]
    NotJson,
    /// The account is missing or not a valid account name.
    #[error("no valid account at {0}")]
    Account(String),
    /// The channel template produced no valid channel name.
    #[error("channel template gave no valid channel: {0}")]
    Channel(String),
    /// A kept field is missing.
    #[error("missing field {0}")]
    MissingField(String),
}

enum AccountFrom {
    Pointer(String),
    Header(String),
}

enum Part {
    Literal(String),
    Pointer(String),
}

/// The compiled rules of one source.
pub struct Rules {
    account: AccountFrom,
    channel: Vec<Part>,
    drop: Vec<(String, String)>,
    keep: Vec<(String, String)>,
}

/// What the rules made of a record.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A Herald record for this account and channel, with this JSON payload.
    Publish(AccountId, ChannelName, Bytes),
    /// A drop rule matched.
    Dropped,
}

fn pointer_ok(p: &str) -> bool {
    p.is_empty() || p.starts_with('/')
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Rules {
    /// Compiles a source's rules; the error names what is wrong.
    pub fn compile(c: &SourceConfig) -> Result<Self, RuleError> {
        let err = |field: &'static str, message: String| RuleError { source_name: c.name.clone(), field, message };
        let account = match c.account.strip_prefix("header:") {
            Some(h) if !h.is_empty() => AccountFrom::Header(h.to_owned()),
            Some(_) => return Err(err("account", "header: needs a header name".into())),
            None if c.account.starts_with('/') => AccountFrom::Pointer(c.account.clone()),
            None => return Err(err("account", format!("{:?} is neither a JSON pointer (/…) nor header:NAME", c.account))),
        };
        let mut channel = Vec::new();
        let mut rest = c.channel.as_str();
        while let Some(start) = rest.find('{') {
            if start > 0 {
                channel.push(Part::Literal(rest[..start].to_owned()));
            }
            let end = rest[start..].find('}').ok_or_else(|| err("channel", "unclosed '{'".into()))? + start;
            let p = &rest[start + 1..end];
            if !p.starts_with('/') {
                return Err(err("channel", format!("placeholder {{{p}}} must be a JSON pointer (/…)")));
            }
            channel.push(Part::Pointer(p.to_owned()));
            rest = &rest[end + 1..];
        }
        if rest.contains('}') {
            return Err(err("channel", "unopened '}'".into()));
        }
        if !rest.is_empty() {
            channel.push(Part::Literal(rest.to_owned()));
        }
        if channel.is_empty() {
            return Err(err("channel", "the template is empty".into()));
        }
        for part in &channel {
            if let Part::Literal(l) = part
                && (l.contains('/') || ChannelName::new(&l.replace("..", "_")).is_err()) {
                    return Err(err("channel", format!("literal {l:?} has characters a channel name cannot have")));
                }
        }
        for d in &c.drop {
            if !pointer_ok(&d.field) {
                return Err(err("drop", format!("field {:?} must be a JSON pointer", d.field)));
            }
        }
        for (name, p) in &c.keep {
            if !pointer_ok(p) || name.is_empty() {
                return Err(err("keep", format!("{name} = {p:?}: keep maps output names to JSON pointers")));
            }
        }
        Ok(Self {
            account,
            channel,
            drop: c.drop.iter().map(|d| (d.field.clone(), d.equals.clone())).collect(),
            keep: c.keep.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        })
    }

    /// Applies the rules to one record (its value and a header lookup).
    pub fn apply<'h>(&self, value: &[u8], header: impl Fn(&str) -> Option<&'h str>) -> Result<Outcome, Malformed> {
        let v: Value = serde_json::from_slice(value).map_err(|_| Malformed::NotJson)?;
        if self.drop.iter().any(|(p, eq)| v.pointer(p).and_then(scalar).is_some_and(|s| &s == eq)) {
            return Ok(Outcome::Dropped);
        }
        let account = match &self.account {
            AccountFrom::Pointer(p) => v.pointer(p).and_then(scalar).and_then(|a| AccountId::new(&a).ok()).ok_or_else(|| Malformed::Account(p.clone()))?,
            AccountFrom::Header(h) => header(h).and_then(|a| AccountId::new(a).ok()).ok_or_else(|| Malformed::Account(format!("header:{h}")))?,
        };
        let mut name = String::new();
        for part in &self.channel {
            match part {
                Part::Literal(l) => name.push_str(l),
                Part::Pointer(p) => name.push_str(&v.pointer(p).and_then(scalar).ok_or_else(|| Malformed::Channel(format!("nothing at {p}")))?),
            }
        }
        let channel = ChannelName::new(&name).map_err(|e| Malformed::Channel(e.to_string()))?;
        let data = if self.keep.is_empty() {
            Bytes::copy_from_slice(value)
        } else {
            let mut out = Map::new();
            for (name, p) in &self.keep {
                let field = v.pointer(p).ok_or_else(|| Malformed::MissingField(p.clone()))?;
                out.insert(name.clone(), field.clone());
            }
            Bytes::from(Value::Object(out).to_string())
        };
        Ok(Outcome::Publish(account, channel, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_config::DropRule;

    fn incident_rules() -> Rules {
        Rules::compile(&SourceConfig {
            name: "incidents".into(),
            topic: "pd.events".into(),
            brokers: None,
            group: None,
            account: "/account_id".into(),
            channel: "incidents".into(),
            drop: vec![DropRule { field: "/entity".into(), equals: "alerts::alert".into() }],
            keep: [("ent", "/entity"), ("id", "/id"), ("type", "/event_type")].into_iter().map(|(a, b)| (a.to_owned(), b.to_owned())).collect(),
            dead_letter_topic: None,
        })
        .unwrap()
    }

    #[test]
    fn the_incident_example_projects_drops_and_routes_by_account() {
        let r = incident_rules();
        let rec = br#"{"account_id":"acme","entity":"incident","event_type":"updated","id":"PAM4FGS","incident":{"title":"db down","body":"..."}}"#;
        assert_eq!(
            r.apply(rec, |_| None).unwrap(),
            Outcome::Publish(AccountId::new("acme").unwrap(), ChannelName::new("incidents").unwrap(), Bytes::from(r#"{"ent":"incident","id":"PAM4FGS","type":"updated"}"#))
        );
        let alert = br#"{"account_id":"acme","entity":"alerts::alert","event_type":"created","id":"A1"}"#;
        assert_eq!(r.apply(alert, |_| None).unwrap(), Outcome::Dropped);
        assert_eq!(r.apply(b"{not json", |_| None).unwrap_err(), Malformed::NotJson);
        assert!(matches!(r.apply(br#"{"entity":"incident","id":"x","event_type":"y"}"#, |_| None), Err(Malformed::Account(_))));
        assert!(matches!(r.apply(br#"{"account_id":"Not An Account","entity":"incident","id":"x","event_type":"y"}"#, |_| None), Err(Malformed::Account(_))));
        assert!(matches!(r.apply(br#"{"account_id":"acme","entity":"incident","event_type":"y"}"#, |_| None), Err(Malformed::MissingField(_))));
    }

    #[test]
    fn channel_templates_fill_placeholders_and_refuse_escapes() {
        let mut c = SourceConfig {
            name: "s".into(),
            topic: "t".into(),
            brokers: None,
            group: None,
            account: "header:x-account".into(),
            channel: "service:{/service/id}".into(),
            drop: vec![],
            keep: Default::default(),
            dead_letter_topic: None,
        };
        let r = Rules::compile(&c).unwrap();
        let ok = r.apply(br#"{"service":{"id":"P12"}}"#, |h| (h == "x-account").then_some("beta")).unwrap();
        assert!(matches!(ok, Outcome::Publish(a, ch, _) if a.as_str() == "beta" && ch.as_str() == "service:P12"));
        // A value that would leave the account is not a channel name.
        assert!(matches!(r.apply(br#"{"service":{"id":"../acme/x"}}"#, |_| Some("beta")), Err(Malformed::Channel(_))));
        for bad in ["", "{service}", "a{/x", "a/b", "x}"] {
            c.channel = bad.into();
            assert!(Rules::compile(&c).is_err(), "{bad:?} compiled");
        }
        c.channel = "ok".into();
        c.account = "account_id".into();
        assert!(Rules::compile(&c).err().expect("refused").to_string().contains("account"));
    }
}
