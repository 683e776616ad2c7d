//! `[webhooks]`: the endpoints `herald webhooks` posts the region's connection, presence and
//! refused-publish events to, and how it delivers (batches, retries, signing secrets). The
//! events, the signature and the delivery guarantees are described in docs/backends.md.

use serde::Deserialize;

use crate::ConfigError;
use herald_core::AccountId;

/// Every event type an endpoint can ask for (`events = [...]`); none listed means all.
pub const WEBHOOK_EVENT_TYPES: [&str; 7] =
    ["connection_opened", "connection_closed", "presence_join", "presence_leave", "channel_occupied", "channel_vacated", "publish_rejected"];

/// `[webhooks]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// How long the active `herald webhooks` holds its lease without renewing it: a standby takes
    /// over within this long after the active one dies.
    pub lease_ttl_ms: u64,
    /// Where events that outlived their endpoint's `retry_for_secs` go (default
    /// `<records topic>.presence.dead-letter`).
    pub dead_letter_topic: Option<String>,
    /// The endpoints (`[[webhooks.endpoints]]`).
    pub endpoints: Vec<WebhookEndpointConfig>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self { lease_ttl_ms: 10_000, dead_letter_topic: None, endpoints: Vec::new() }
    }
}

/// `[[webhooks.endpoints]]`: one receiver.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookEndpointConfig {
    /// A short name, unique: the key of its stored position, and its metrics label.
    pub name: String,
    /// `http://…` or `https://…` (verified against the public web PKI, or `ca_file`).
    pub url: String,
    /// The event types it gets (see [`WEBHOOK_EVENT_TYPES`]); empty: all.
    pub events: Vec<String>,
    /// The accounts whose events it gets; empty: all.
    pub accounts: Vec<AccountId>,
    /// At most this many events per request.
    pub batch_size: usize,
    /// How long the first event of a batch waits for others.
    pub linger_ms: u64,
    /// How long a batch is retried before its events go to the dead-letter topic.
    pub retry_for_secs: u64,
    /// The longest wait between two attempts (waits double from 500 ms, with jitter).
    pub max_backoff_ms: u64,
    /// One request's time limit (connect, send, answer).
    pub timeout_ms: u64,
    /// The signing secrets, each `file:PATH` or `env:NAME`; one signature per secret, so that
    /// a secret can be rotated by listing the old and the new one for a while.
    pub secrets: Vec<String>,
    /// PEM file of the CA(s) that sign the endpoint's certificate (default: the public web's).
    pub ca_file: Option<String>,
}

impl Default for WebhookEndpointConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: String::new(),
            events: Vec::new(),
            accounts: Vec::new(),
            batch_size: 100,
            linger_ms: 200,
            retry_for_secs: 24 * 3600,
            max_backoff_ms: 60_000,
            timeout_ms: 10_000,
            secrets: Vec::new(),
            ca_file: None,
        }
    }
}

impl WebhooksConfig {
    /// Checks every value; the error names the field. Secrets are not read here
    /// ([`WebhookEndpointConfig::read_secrets`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, message: String| Err(ConfigError::Invalid { field, message });
        if !(1000..=600_000).contains(&self.lease_ttl_ms) {
            return bad("webhooks.lease_ttl_ms", "must be between 1000 and 600000".into());
        }
        if let Some(t) = &self.dead_letter_topic
            && (t.is_empty() || !t.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-')))
        {
            return bad("webhooks.dead_letter_topic", "topic names are made of A-Z a-z 0-9 . _ -".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for e in &self.endpoints {
            let name_ok = !e.name.is_empty() && e.name.len() <= 64 && e.name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
            if !name_ok || !names.insert(e.name.as_str()) {
                return bad("webhooks.endpoints.name", format!("{:?}: names must be unique, 1-64 characters of A-Z a-z 0-9 . _ -", e.name));
            }
            e.validate()?;
        }
        Ok(())
    }
}

impl WebhookEndpointConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, message: String| Err(ConfigError::Invalid { field, message: format!("endpoint {}: {message}", self.name) });
        let rest = self.url.strip_prefix("http://").or_else(|| self.url.strip_prefix("https://"));
        if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
            return bad("webhooks.endpoints.url", format!("must be http://HOST[:PORT]/PATH or https://…, not {:?}", self.url));
        }
        if let Some(t) = self.events.iter().find(|t| !WEBHOOK_EVENT_TYPES.contains(&t.as_str())) {
            return bad("webhooks.endpoints.events", format!("unknown event type {t:?} (known: {})", WEBHOOK_EVENT_TYPES.join(", ")));
        }
        if !(1..=1000).contains(&self.batch_size) {
            return bad("webhooks.endpoints.batch_size", "must be between 1 and 1000".into());
        }
        if self.linger_ms > 60_000 {
            return bad("webhooks.endpoints.linger_ms", "must be at most 60000".into());
        }
        if !(1..=7 * 24 * 3600).contains(&self.retry_for_secs) {
            return bad("webhooks.endpoints.retry_for_secs", "must be between 1 and 604800 (7 days)".into());
        }
        if !(100..=3_600_000).contains(&self.max_backoff_ms) {
            return bad("webhooks.endpoints.max_backoff_ms", "must be between 100 and 3600000".into());
        }
        if !(100..=300_000).contains(&self.timeout_ms) {
            return bad("webhooks.endpoints.timeout_ms", "must be between 100 and 300000".into());
        }
        if self.secrets.is_empty() || self.secrets.len() > 4 {
            return bad("webhooks.endpoints.secrets", "one to four secrets (file:PATH or env:NAME); requests are always signed".into());
        }
        if let Some(s) = self.secrets.iter().find(|s| !(s.starts_with("file:") || s.starts_with("env:")) || s.len() <= 5) {
            return bad("webhooks.endpoints.secrets", format!("{s:?} must be file:PATH or env:NAME (the secret itself never goes in this file)"));
        }
        if self.ca_file.as_deref().is_some_and(str::is_empty) {
            return bad("webhooks.endpoints.ca_file", "must not be empty".into());
        }
        Ok(())
    }

    /// The signing secrets, read now, in order: from each file (trailing newline dropped) or
    /// environment variable (through `env`). A missing one, or one shorter than 16 bytes, is an
    /// error naming it.
    pub fn read_secrets(&self, env: impl Fn(&str) -> Option<String>) -> Result<Vec<Vec<u8>>, ConfigError> {
        let bad = |message: String| ConfigError::Invalid { field: "webhooks.endpoints.secrets", message: format!("endpoint {}: {message}", self.name) };
        let mut out = Vec::new();
        for s in &self.secrets {
            let value = if let Some(path) = s.strip_prefix("file:") {
                std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read {path}: {e}")))?.trim_end_matches(['\r', '\n']).to_owned()
            } else {
                let name = s.strip_prefix("env:").unwrap_or(s);
                env(name).ok_or_else(|| bad(format!("the environment variable {name} is not set")))?
            };
            if value.len() < 16 {
                return Err(bad(format!("the secret from {s} is shorter than 16 bytes")));
            }
            out.push(value.into_bytes());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> WebhooksConfig {
        toml::from_str(s).unwrap()
    }

    const OK: &str = "[[endpoints]]\nname = \"incidents\"\nurl = \"https://hooks.example/herald\"\nsecrets = [\"env:HOOK_SECRET\"]\n";

    #[test]
    fn an_endpoint_gets_defaults_and_its_secrets_from_the_environment_or_a_file() {
        let c = parse(OK);
        c.validate().unwrap();
        let e = &c.endpoints[0];
        assert_eq!((e.batch_size, e.linger_ms, e.retry_for_secs), (100, 200, 86_400));
        assert_eq!(e.read_secrets(|k| (k == "HOOK_SECRET").then(|| "0123456789abcdef".into())).unwrap(), vec![b"0123456789abcdef".to_vec()]);
        let err = e.read_secrets(|_| None).unwrap_err().to_string();
        assert!(err.contains("HOOK_SECRET is not set"), "{err}");
        let short = e.read_secrets(|_| Some("short".into())).unwrap_err().to_string();
        assert!(short.contains("shorter than 16"), "{short}");
        let dir = std::env::temp_dir().join(format!("herald-hook-secret-{}", std::process::id()));
        std::fs::write(&dir, "from-a-file-0123456789\n").unwrap();
        let mut f = e.clone();
        f.secrets = vec![format!("file:{}", dir.display()), "env:HOOK_SECRET".into()];
        let both = f.read_secrets(|_| Some("from-the-env-0123456789".into())).unwrap();
        assert_eq!(both, vec![b"from-a-file-0123456789".to_vec(), b"from-the-env-0123456789".to_vec()], "in order, newline dropped");
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn bad_endpoints_are_refused_naming_the_field() {
        for (toml, field, needle) in [
            (OK.replace("https://hooks.example/herald", "ftp://x"), "webhooks.endpoints.url", "http://HOST"),
            (OK.replace("secrets = [\"env:HOOK_SECRET\"]", "secrets = []"), "webhooks.endpoints.secrets", "one to four"),
            (OK.replace("env:HOOK_SECRET", "hunter2hunter2hunter2"), "webhooks.endpoints.secrets", "file:PATH or env:NAME"),
            (format!("{OK}events = [\"joined\"]\n"), "webhooks.endpoints.events", "unknown event type \"joined\""),
            (format!("{OK}batch_size = 0\n"), "webhooks.endpoints.batch_size", "between 1 and 1000"),
            (format!("{OK}{OK}"), "webhooks.endpoints.name", "unique"),
            (format!("lease_ttl_ms = 10\n{OK}"), "webhooks.lease_ttl_ms", "between 1000"),
        ] {
            let err = parse(&toml).validate().expect_err(&toml);
            let ConfigError::Invalid { field: f, .. } = &err else { panic!("{err}") };
            assert_eq!(*f, field, "{toml}: {err}");
            assert!(err.to_string().contains(needle), "{toml}: {err}");
        }
        let unknown = toml::from_str::<WebhooksConfig>(&format!("{OK}secret = \"x\"\n")).unwrap_err().to_string();
        assert!(unknown.contains("secret"), "{unknown}");
        let account = toml::from_str::<WebhooksConfig>(&format!("{OK}accounts = [\"a b\"]\n")).unwrap_err().to_string();
        assert!(account.contains("a b"), "{account}");
    }
}
