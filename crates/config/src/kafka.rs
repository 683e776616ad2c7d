//! `[kafka]`: how Herald connects to Kafka (TLS, SASL, other client properties), for every Kafka
//! client it makes: the bus, sources, the presence feed and `herald replicate`.
//!
//! Secrets never sit in this file: the SASL password and the private key's password are read
//! from files (`sasl_password_file`, `ssl_key_password_file`) or from the environment
//! (`HERALD_KAFKA_SASL_PASSWORD`, `HERALD_KAFKA_SSL_KEY_PASSWORD`) when the client is built.
//! `[kafka.regions.<name>]` gives another region's cluster its own settings (for the replicator's
//! links); a region without an entry uses the top-level ones.

use serde::Deserialize;
use std::collections::BTreeMap;

use crate::ConfigError;

/// Settings of the connection to one Kafka cluster: `[kafka]` for this region's, and each
/// `[kafka.regions.<name>]` for another region's.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `plaintext` (default), `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: String,
    /// PEM file of the CA(s) that sign the brokers' certificates (default: the system's).
    pub ca_file: Option<String>,
    /// PEM file of this client's certificate, for brokers that require one (mutual TLS).
    pub cert_file: Option<String>,
    /// PEM file of this client's private key.
    pub key_file: Option<String>,
    /// File holding the private key's password, if it has one (or env
    /// `HERALD_KAFKA_SSL_KEY_PASSWORD`).
    pub ssl_key_password_file: Option<String>,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub sasl_mechanism: Option<String>,
    /// The SASL user name.
    pub sasl_username: Option<String>,
    /// File holding the SASL password (or env `HERALD_KAFKA_SASL_PASSWORD`).
    pub sasl_password_file: Option<String>,
    /// Other librdkafka properties, passed as they are (docs/kafka.md lists the ones Herald owns,
    /// which are refused here).
    pub properties: BTreeMap<String, String>,
    /// Other regions' clusters, for `herald replicate`'s links, by region name (top level only).
    pub regions: BTreeMap<String, KafkaConfig>,
}

/// Properties Herald sets itself (idempotence, acks, partitioning, offsets, groups) or that have
/// a typed key above, or that would put a secret in the config file: refused in `properties`.
const OWNED: &[(&str, &str)] = &[
    ("bootstrap.servers", "set by the bus URL (kafka://HOST:PORT,…)"),
    ("metadata.broker.list", "set by the bus URL (kafka://HOST:PORT,…)"),
    ("enable.idempotence", "Herald's producers are always idempotent"),
    ("acks", "Herald writes with acks=all"),
    ("request.required.acks", "Herald writes with acks=all"),
    ("partitioner", "Herald picks partitions itself (by account, Kafka's murmur2)"),
    ("transactional.id", "Herald does not write transactionally (a transaction marker looks like a hole in a partition)"),
    ("group.id", "Herald sets consumer groups itself (sources: sources[].group)"),
    ("enable.auto.commit", "Herald commits offsets itself"),
    ("enable.auto.offset.store", "Herald stores offsets itself"),
    ("auto.offset.reset", "Herald positions its readers itself"),
    ("isolation.level", "Herald's topics carry no transactions"),
    ("security.protocol", "use kafka.security_protocol"),
    ("sasl.mechanism", "use kafka.sasl_mechanism"),
    ("sasl.mechanisms", "use kafka.sasl_mechanism"),
    ("sasl.username", "use kafka.sasl_username"),
    ("sasl.password", "a secret: use kafka.sasl_password_file or HERALD_KAFKA_SASL_PASSWORD"),
    ("ssl.key.password", "a secret: use kafka.ssl_key_password_file or HERALD_KAFKA_SSL_KEY_PASSWORD"),
    ("ssl.keystore.password", "a secret: use a PEM key with kafka.key_file"),
    ("ssl.ca.location", "use kafka.ca_file"),
    ("ssl.certificate.location", "use kafka.cert_file"),
    ("ssl.key.location", "use kafka.key_file"),
    ("sasl.oauthbearer.client.secret", "OAUTHBEARER is not supported by this build"),
];

impl KafkaConfig {
    /// Checks the values of one cluster's settings; `field` names the section in errors.
    fn validate_cluster(&self, field: &'static str) -> Result<(), ConfigError> {
        let bad = |message: String| Err(ConfigError::Invalid { field, message });
        let protocol = self.protocol();
        if !["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"].contains(&protocol.as_str()) {
            return bad(format!("security_protocol must be plaintext, ssl, sasl_plaintext or sasl_ssl, not {:?}", self.security_protocol));
        }
        let tls = protocol.ends_with("ssl");
        let sasl = protocol.starts_with("sasl");
        if !tls && (self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()) {
            return bad(format!("ca_file, cert_file and key_file need security_protocol ssl or sasl_ssl (it is {protocol})"));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return bad("cert_file and key_file go together (a client certificate and its key)".into());
        }
        match (&self.sasl_mechanism, sasl) {
            (Some(m), true) => {
                if m == "OAUTHBEARER" {
                    return bad("sasl_mechanism OAUTHBEARER is not supported by this build (its bundled librdkafka has no HTTP client for the token endpoint); use SCRAM-SHA-512 or PLAIN".into());
                }
                if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&m.as_str()) {
                    return bad(format!("sasl_mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, not {m:?}"));
                }
                if self.sasl_username.as_deref().is_none_or(str::is_empty) {
                    return bad("sasl_username is required with SASL".into());
                }
            }
            (None, true) => return bad(format!("security_protocol {protocol} needs sasl_mechanism")),
            (Some(_), false) => return bad(format!("sasl_mechanism needs security_protocol sasl_plaintext or sasl_ssl (it is {protocol})")),
            (None, false) => {}
        }
        for key in self.properties.keys() {
            if let Some((_, why)) = OWNED.iter().find(|(k, _)| k == key) {
                return bad(format!("properties.{key:?} is refused: {why}"));
            }
            if key.contains("password") || key.contains("secret") {
                return bad(format!("properties.{key:?} looks like a secret: secrets never go into the config file"));
            }
        }
        Ok(())
    }

    fn protocol(&self) -> String {
        if self.security_protocol.is_empty() { "plaintext".into() } else { self.security_protocol.to_ascii_lowercase() }
    }


    /// The librdkafka properties for these settings, secrets read now: from the named files,
    /// else from `env` (`HERALD_KAFKA_SASL_PASSWORD`, `HERALD_KAFKA_SSL_KEY_PASSWORD`).
    pub fn client_properties(&self, env: impl Fn(&str) -> Option<String>) -> Result<Vec<(String, String)>, ConfigError> {
        let mut out: Vec<(String, String)> = self.properties.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let protocol = self.protocol();
        if protocol != "plaintext" {
            out.push(("security.protocol".into(), protocol.clone()));
        }
        let pairs = [("ssl.ca.location", &self.ca_file), ("ssl.certificate.location", &self.cert_file), ("ssl.key.location", &self.key_file)];
        for (k, v) in pairs {
            if let Some(v) = v {
                out.push((k.into(), v.clone()));
            }
        }
        if self.key_file.is_some()
            && let Some(p) = secret(&self.ssl_key_password_file, "kafka.ssl_key_password_file", "HERALD_KAFKA_SSL_KEY_PASSWORD", &env)?
        {
            out.push(("ssl.key.password".into(), p));
        }
        if let Some(m) = &self.sasl_mechanism {
            out.push(("sasl.mechanism".into(), m.clone()));
            out.push(("sasl.username".into(), self.sasl_username.clone().unwrap_or_default()));
            let password = secret(&self.sasl_password_file, "kafka.sasl_password_file", "HERALD_KAFKA_SASL_PASSWORD", &env)?.ok_or(ConfigError::Invalid {
                field: "kafka.sasl_password_file",
                message: "SASL needs a password: kafka.sasl_password_file, or HERALD_KAFKA_SASL_PASSWORD".into(),
            })?;
            out.push(("sasl.password".into(), password));
        }
        Ok(out)
    }
}

/// A secret from `file` (trailing newline dropped), else from the environment variable.
pub(crate) fn secret(file: &Option<String>, field: &'static str, var: &str, env: &impl Fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
    match file {
        Some(path) => std::fs::read_to_string(path)
            .map(|s| Some(s.trim_end_matches(['\r', '\n']).to_owned()))
            .map_err(|e| ConfigError::Invalid { field, message: format!("cannot read {path}: {e}") }),
        None => Ok(env(var)),
    }
}

impl KafkaConfig {
    /// Checks this region's settings and every other region's.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_cluster("kafka")?;
        for (name, r) in &self.regions {
            if herald_core::RegionName::new(name).is_err() {
                return Err(ConfigError::Invalid { field: "kafka.regions", message: format!("{name:?} is not a region name") });
            }
            if !r.regions.is_empty() {
                return Err(ConfigError::Invalid { field: "kafka.regions", message: format!("kafka.regions.{name} cannot have regions of its own") });
            }
            r.validate_cluster("kafka.regions")?;
        }
        Ok(())
    }

    /// The settings for `region`'s cluster: its own entry, else this region's.
    pub fn for_region(&self, region: &str) -> &KafkaConfig {
        self.regions.get(region).unwrap_or(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> KafkaConfig {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn sasl_ssl_with_a_password_file_becomes_librdkafka_properties() {
        let dir = std::env::temp_dir().join(format!("herald-kafka-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pw = dir.join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let c = parse(&format!(
            "security_protocol = \"sasl_ssl\"\nca_file = \"/ca.pem\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"herald\"\nsasl_password_file = {:?}\n[properties]\n\"socket.timeout.ms\" = \"30000\"\n",
            pw.to_str().unwrap()
        ));
        c.validate().unwrap();
        let p = c.client_properties(|_| None).unwrap();
        let get = |k: &str| p.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
        assert_eq!(get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(get("ssl.ca.location"), Some("/ca.pem"));
        assert_eq!(get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(get("sasl.username"), Some("herald"));
        assert_eq!(get("sasl.password"), Some("s3cret"), "read from the file, newline dropped");
        assert_eq!(get("socket.timeout.ms"), Some("30000"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_password_comes_from_the_environment_without_a_file() {
        let c = parse("security_protocol = \"sasl_plaintext\"\nsasl_mechanism = \"PLAIN\"\nsasl_username = \"u\"\n");
        c.validate().unwrap();
        let p = c.client_properties(|k| (k == "HERALD_KAFKA_SASL_PASSWORD").then(|| "from-env".to_owned())).unwrap();
        assert!(p.contains(&("sasl.password".into(), "from-env".into())));
        assert!(c.client_properties(|_| None).is_err(), "no password anywhere is an error");
    }

    #[test]
    fn owned_secret_and_inconsistent_settings_are_refused_naming_the_problem() {
        for (toml, needle) in [
            ("[properties]\n\"enable.idempotence\" = \"false\"\n", "always idempotent"),
            ("[properties]\n\"acks\" = \"1\"\n", "acks=all"),
            ("[properties]\n\"partitioner\" = \"random\"\n", "picks partitions"),
            ("[properties]\n\"sasl.password\" = \"x\"\n", "a secret"),
            ("[properties]\n\"sasl.oauthbearer.client.secret\" = \"x\"\n", "OAUTHBEARER"),
            ("[properties]\n\"my.password\" = \"x\"\n", "looks like a secret"),
            ("security_protocol = \"tls\"\n", "security_protocol must be"),
            ("ca_file = \"/ca\"\n", "need security_protocol ssl"),
            ("security_protocol = \"ssl\"\ncert_file = \"/c\"\n", "go together"),
            ("security_protocol = \"sasl_ssl\"\n", "needs sasl_mechanism"),
            ("security_protocol = \"sasl_ssl\"\nsasl_mechanism = \"GSSAPI\"\nsasl_username = \"u\"\n", "must be PLAIN"),
            ("security_protocol = \"sasl_ssl\"\nsasl_mechanism = \"OAUTHBEARER\"\nsasl_username = \"u\"\n", "not supported"),
            ("security_protocol = \"sasl_ssl\"\nsasl_mechanism = \"PLAIN\"\n", "sasl_username is required"),
            ("[regions.\"A B\"]\n", "not a region name"),
        ] {
            let err = parse(toml).validate().expect_err(toml).to_string();
            assert!(err.contains(needle), "{toml:?}: {err}");
        }
    }

    #[test]
    fn another_region_uses_its_own_entry_or_this_regions() {
        let c = parse("security_protocol = \"ssl\"\n[regions.b]\nsecurity_protocol = \"sasl_ssl\"\nsasl_mechanism = \"PLAIN\"\nsasl_username = \"b\"\n");
        c.validate().unwrap();
        assert_eq!(c.for_region("b").sasl_username.as_deref(), Some("b"));
        assert_eq!(c.for_region("c").security_protocol, "ssl");
    }
}
