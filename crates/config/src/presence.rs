//! `[presence]`: where presence lives (memory, or a Redis shared by a region's edges) and how to
//! log in to that Redis: an ACL user, a password from a file or the environment (never from this
//! file), and TLS (`rediss://`) with an own CA and an optional client certificate.
//!
//! Only a standalone Redis (a single primary, or a managed endpoint that fronts one) is
//! supported: presence's scripts touch keys of several channels at once, which Redis Cluster
//! refuses, and the client has no Sentinel discovery. Both are refused at start.
//! `[presence.regions.<name>]` gives another region's Redis its own login, for
//! `herald replicate --from-presence`; a region without an entry uses the top-level one.

use serde::Deserialize;
use std::collections::BTreeMap;

use crate::ConfigError;
use crate::kafka::secret;

/// `[presence]`: in memory (one node) or in Redis (every edge node of a region).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// `memory`, `redis://[USER@]HOST:PORT[/DB]` or `rediss://…` for TLS (env `HERALD_PRESENCE`).
    pub url: String,
    /// Key prefix in Redis; regions sharing one Redis need different ones.
    pub prefix: String,
    /// Seconds a node's members outlive its last heartbeat; a dead node's members leave within
    /// `ttl_secs * 4 / 3`.
    pub ttl_secs: u64,
    /// With a Kafka bus: also write every join and leave to `<records topic>.presence`, for
    /// backends (docs/kafka.md).
    pub kafka_feed: bool,
    /// The ACL user (Redis 6+; default: the URL's, else `default`).
    pub username: Option<String>,
    /// File holding the password (or env `HERALD_PRESENCE_PASSWORD`).
    pub password_file: Option<String>,
    /// TLS settings for a `rediss://` URL.
    pub tls: PresenceTlsConfig,
    /// Other regions' Redis logins, for `herald replicate --from-presence` (top level only).
    pub regions: BTreeMap<String, RemotePresenceConfig>,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            url: "memory".into(),
            prefix: "herald:presence:".into(),
            ttl_secs: 15,
            kafka_feed: true,
            username: None,
            password_file: None,
            tls: PresenceTlsConfig::default(),
            regions: BTreeMap::new(),
        }
    }
}

/// `[presence.tls]`: for `rediss://` only.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceTlsConfig {
    /// PEM file of the CA(s) that sign Redis's certificate (default: the system's).
    pub ca_file: Option<String>,
    /// PEM file of this client's certificate, for a Redis with `tls-auth-clients yes`.
    pub cert_file: Option<String>,
    /// PEM file of this client's private key (unencrypted).
    pub key_file: Option<String>,
}

/// `[presence.regions.<name>]`: how `herald replicate` logs in to another region's Redis.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RemotePresenceConfig {
    /// The ACL user.
    pub username: Option<String>,
    /// File holding the password (there is no environment variable for another region's).
    pub password_file: Option<String>,
    /// TLS settings, for a `rediss://` URL.
    pub tls: PresenceTlsConfig,
}

/// A login to one Redis with its secret read: what the presence adapter is given.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedisLogin {
    /// The ACL user, if set outside the URL.
    pub username: Option<String>,
    /// The password, if set outside the URL.
    pub password: Option<String>,
    /// TLS files (meaningful with `rediss://`).
    pub tls: PresenceTlsConfig,
}

impl std::fmt::Debug for RedisLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLogin")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// Checks a Redis URL: `redis://` or `rediss://`, a standalone server. `tls` says whether
/// `[presence.tls]` settings are present (they need `rediss://`).
pub fn check_redis_url(url: &str, field: &'static str, tls: bool) -> Result<(), ConfigError> {
    let bad = |message: String| Err(ConfigError::Invalid { field, message });
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
    match scheme {
        "redis" | "rediss" => {}
        "redis+sentinel" | "rediss+sentinel" | "redis-cluster" | "rediss-cluster" | "redis+cluster" => {
            return bad(format!(
                "{scheme}:// is not supported: presence needs a standalone Redis (one primary, or a managed endpoint in front of one); Sentinel and Cluster are refused (docs/operations.md, \"Presence\")"
            ));
        }
        _ => return bad("must be memory, redis://[USER@]HOST:PORT[/DB] or rediss://[USER@]HOST:PORT[/DB] (a standalone Redis)".into()),
    }
    let rest = &url[scheme.len() + 3..];
    if rest.contains('#') {
        return bad("a URL fragment (such as #insecure, which turns off certificate checks) is refused; give the CA with presence.tls.ca_file".into());
    }
    let authority = rest.split('/').next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.is_empty() || host_port.contains(',') {
        return bad("needs exactly one HOST[:PORT] (a standalone Redis; several hosts mean Sentinel or Cluster, which are not supported)".into());
    }
    if tls && scheme != "rediss" {
        return bad("presence.tls settings need a rediss:// URL (Redis over TLS)".into());
    }
    Ok(())
}

fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    authority.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

impl PresenceTlsConfig {
    fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }

    fn validate(&self, field: &'static str) -> Result<(), ConfigError> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(ConfigError::Invalid { field, message: "cert_file and key_file go together (a client certificate and its key)".into() });
        }
        for f in [&self.ca_file, &self.cert_file, &self.key_file].into_iter().flatten() {
            if f.is_empty() {
                return Err(ConfigError::Invalid { field, message: "a file name must not be empty".into() });
            }
        }
        Ok(())
    }
}

impl PresenceConfig {
    /// Checks every value; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, message: &str| Err(ConfigError::Invalid { field, message: message.into() });
        if self.url == "memory" && self.tls.is_set() {
            return bad("presence.tls", "TLS settings need presence.url = \"rediss://…\" (it is memory)");
        }
        if self.url != "memory" {
            check_redis_url(&self.url, "presence.url", self.tls.is_set())?;
            if self.password_file.is_some() && url_has_password(&self.url) {
                return bad("presence.password_file", "the URL has a password too: give it in one place (the file, or HERALD_PRESENCE_PASSWORD)");
            }
        }
        self.tls.validate("presence.tls")?;
        for (name, r) in &self.regions {
            if herald_core::RegionName::new(name).is_err() {
                return Err(ConfigError::Invalid { field: "presence.regions", message: format!("{name:?} is not a region name") });
            }
            r.tls.validate("presence.regions.tls")?;
        }
        if !(3..=600).contains(&self.ttl_secs) {
            return bad("presence.ttl_secs", "must be between 3 and 600");
        }
        if self.prefix.is_empty() {
            return bad("presence.prefix", "must not be empty");
        }
        Ok(())
    }

    /// This region's login, the password read now: from `password_file`, else from `env`
    /// (`HERALD_PRESENCE_PASSWORD`), else whatever the URL says.
    pub fn login(&self, env: impl Fn(&str) -> Option<String>) -> Result<RedisLogin, ConfigError> {
        Ok(RedisLogin {
            username: self.username.clone(),
            password: secret(&self.password_file, "presence.password_file", "HERALD_PRESENCE_PASSWORD", &env)?,
            tls: self.tls.clone(),
        })
    }

    /// The login for `region`'s Redis (`herald replicate --from-presence`): its own entry, else
    /// this region's.
    pub fn login_for_region(&self, region: &str, env: impl Fn(&str) -> Option<String>) -> Result<RedisLogin, ConfigError> {
        match self.regions.get(region) {
            Some(r) => Ok(RedisLogin {
                username: r.username.clone(),
                password: secret(&r.password_file, "presence.regions.password_file", "", &|_| None)?,
                tls: r.tls.clone(),
            }),
            None => self.login(env),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> PresenceConfig {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn a_tls_login_with_a_password_file_is_read_with_its_secret() {
        let dir = std::env::temp_dir().join(format!("herald-presence-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pw = dir.join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let c = parse(&format!(
            "url = \"rediss://redis.example:6380/2\"\nusername = \"herald\"\npassword_file = {:?}\n[tls]\nca_file = \"/ca.pem\"\ncert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\n",
            pw.to_str().unwrap()
        ));
        c.validate().unwrap();
        let l = c.login(|_| Some("from-env".into())).unwrap();
        assert_eq!(l.username.as_deref(), Some("herald"));
        assert_eq!(l.password.as_deref(), Some("s3cret"), "the file wins over the environment, newline dropped");
        assert_eq!(l.tls.ca_file.as_deref(), Some("/ca.pem"));
        assert!(!format!("{l:?}").contains("s3cret"), "Debug never prints the password");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_password_comes_from_the_environment_without_a_file() {
        let c = parse("url = \"redis://h:6379\"\nusername = \"u\"\n");
        c.validate().unwrap();
        assert_eq!(c.login(|k| (k == "HERALD_PRESENCE_PASSWORD").then(|| "pw".to_owned())).unwrap().password.as_deref(), Some("pw"));
        assert_eq!(c.login(|_| None).unwrap().password, None);
    }

    #[test]
    fn another_region_uses_its_own_login_or_this_regions() {
        let c = parse("url = \"rediss://a:6380\"\nusername = \"a\"\n[regions.b]\nusername = \"b\"\n[regions.b.tls]\nca_file = \"/b-ca.pem\"\n");
        c.validate().unwrap();
        let b = c.login_for_region("b", |_| None).unwrap();
        assert_eq!((b.username.as_deref(), b.tls.ca_file.as_deref()), (Some("b"), Some("/b-ca.pem")));
        assert_eq!(c.login_for_region("c", |_| None).unwrap().username.as_deref(), Some("a"));
    }

    #[test]
    fn unsupported_topologies_and_inconsistent_settings_are_refused_naming_the_problem() {
        for (toml, field, needle) in [
            ("url = \"redis+sentinel://h:26379/mymaster\"\n", "presence.url", "Sentinel and Cluster are refused"),
            ("url = \"redis://a:6379,b:6379\"\n", "presence.url", "exactly one HOST"),
            ("url = \"rediss://h:6380/#insecure\"\n", "presence.url", "#insecure"),
            ("url = \"http://h\"\n", "presence.url", "must be memory"),
            ("url = \"redis://h:6379\"\n[tls]\nca_file = \"/ca\"\n", "presence.url", "need a rediss:// URL"),
            ("url = \"rediss://h:6380\"\n[tls]\ncert_file = \"/c\"\n", "presence.tls", "go together"),
            ("url = \"redis://u:pw@h:6379\"\npassword_file = \"/pw\"\n", "presence.password_file", "one place"),
            ("url = \"redis://h:6379\"\n[regions.\"A B\"]\n", "presence.regions", "not a region name"),
            ("ttl_secs = 1\n", "presence.ttl_secs", "between 3 and 600"),
            ("[tls]\nca_file = \"/ca\"\n", "presence.tls", "it is memory"),
        ] {
            let err = parse(toml).validate().expect_err(toml);
            let ConfigError::Invalid { field: f, .. } = &err else { panic!("{err}") };
            assert_eq!(*f, field, "{toml:?}: {err}");
            assert!(err.to_string().contains(needle), "{toml:?}: {err}");
        }
        for ok in ["url = \"memory\"\n", "url = \"redis://h:6379/3\"\n", "url = \"rediss://herald@h:6380\"\n[tls]\nca_file = \"/ca\"\n"] {
            parse(ok).validate().expect(ok);
        }
    }
}
