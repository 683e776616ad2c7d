//! `[[auth.proxy]]`: the authorization proxy, a backend Herald asks before it lets a connection
//! in, a subscription start or a client's record through (docs/backends.md, "Authorization
//! proxy"). Optional; several may be listed, for different accounts or channels: the first one
//! that matches an event is asked.

use serde::Deserialize;

use crate::ConfigError;
use herald_core::{AccountId, ChannelPattern};

/// The events a proxy can be asked about (`events = [...]`; none listed means all three).
pub const PROXY_EVENTS: [&str; 3] = ["connect", "subscribe", "publish"];

/// What a proxy that cannot answer means (a timeout, a refused connection, a 5xx, an answer that
/// is not a decision).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyFailure {
    /// Refuse (fail closed): the client gets `unavailable` and retries later. The default.
    #[default]
    Deny,
    /// Let it through with the token's own rights (fail open).
    Allow,
}

/// `[[auth.proxy]]`: one backend.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// `http://…` or `https://…`: where the JSON decisions are asked (POST); or `grpc://host:port`
    /// for a backend implementing `herald.proxy.v1.AuthProxy` (proto/herald/proxy/v1/proxy.proto).
    pub url: String,
    /// CA file for an `https://` URL whose certificate is not from the public web PKI.
    pub ca_file: Option<String>,
    /// Only these accounts' events (empty: every account).
    pub accounts: Vec<AccountId>,
    /// Only subscribes and publishes to channels matching these patterns (empty: every channel).
    /// Connects are asked whatever this says.
    pub channels: Vec<String>,
    /// Which events: `connect`, `subscribe`, `publish` (empty: all).
    pub events: Vec<String>,
    /// How long an answer may take, milliseconds; then `on_error` decides.
    pub timeout_ms: u64,
    /// Requests in flight to this proxy per node; one more waits for a free slot (within its
    /// timeout).
    pub concurrency: usize,
    /// How long a connect or subscribe decision is reused for the same user (and channel),
    /// milliseconds; 0 asks every time. Publishes are asked every time.
    pub cache_ttl_ms: u64,
    /// `deny` (fail closed, the default) or `allow` (fail open).
    pub on_error: ProxyFailure,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            ca_file: None,
            accounts: Vec::new(),
            channels: Vec::new(),
            events: Vec::new(),
            timeout_ms: 1000,
            concurrency: 64,
            cache_ttl_ms: 5000,
            on_error: ProxyFailure::Deny,
        }
    }
}

impl ProxyConfig {
    /// The channel patterns, parsed.
    pub fn channel_patterns(&self) -> Vec<ChannelPattern> {
        self.channels.iter().filter_map(|p| ChannelPattern::parse(p).ok()).collect()
    }

    /// Whether this proxy is asked about `event` (one of [`PROXY_EVENTS`]).
    pub fn asks(&self, event: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event)
    }

    /// Checks the values; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, message: String| Err(ConfigError::Invalid { field, message });
        if !(self.url.starts_with("http://") || self.url.starts_with("https://") || self.url.starts_with("grpc://")) {
            return bad("auth.proxy.url", format!("{:?} must be an http://, https:// or grpc:// URL", self.url));
        }
        if self.ca_file.is_some() && !self.url.starts_with("https://") {
            return bad("auth.proxy.ca_file", "is set but the url is not https:// (a gRPC proxy is reached in plaintext: keep it on the pod's network, or use https://)".into());
        }
        for p in &self.channels {
            if let Err(e) = ChannelPattern::parse(p) {
                return bad("auth.proxy.channels", format!("{p:?}: {e}"));
            }
        }
        if let Some(e) = self.events.iter().find(|e| !PROXY_EVENTS.contains(&e.as_str())) {
            return bad("auth.proxy.events", format!("{e:?} is not one of connect, subscribe, publish"));
        }
        if !(10..=60_000).contains(&self.timeout_ms) {
            return bad("auth.proxy.timeout_ms", "must be between 10 and 60000".into());
        }
        if !(1..=10_000).contains(&self.concurrency) {
            return bad("auth.proxy.concurrency", "must be between 1 and 10000".into());
        }
        if self.cache_ttl_ms > 3_600_000 {
            return bad("auth.proxy.cache_ttl_ms", "must be at most 3600000 (an hour)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    #[test]
    fn a_proxy_reads_with_its_defaults_and_bad_values_name_their_field() {
        let c: Config = toml::from_str("[[auth.proxy]]\nurl = \"http://authz:8080/herald\"\naccounts = [\"acme\"]\nchannels = [\"incident-*\"]\non_error = \"allow\"\n").unwrap();
        let p = &c.auth.proxy[0];
        assert_eq!((p.timeout_ms, p.concurrency, p.cache_ttl_ms, p.on_error), (1000, 64, 5000, super::ProxyFailure::Allow));
        assert!(p.asks("publish") && p.validate().is_ok());
        for (text, field) in [
            ("url = \"authz:8080\"", "auth.proxy.url"),
            ("url = \"http://a\"\nevents = [\"join\"]", "auth.proxy.events"),
            ("url = \"http://a\"\nchannels = [\"a*b*\"]", "auth.proxy.channels"),
            ("url = \"http://a\"\ntimeout_ms = 0", "auth.proxy.timeout_ms"),
            ("url = \"http://a\"\nca_file = \"/ca.pem\"", "auth.proxy.ca_file"),
        ] {
            let c: Config = toml::from_str(&format!("[[auth.proxy]]\n{text}\n")).unwrap();
            let e = c.auth.proxy[0].validate().unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
        assert!(toml::from_str::<Config>("[[auth.proxy]]\nurl = \"http://a\"\non_error = \"maybe\"\n").is_err());
    }
}
