//! `[control.tls]`: how an edge reaches the control plane over TLS (docs/control-plane.md, "TLS").
//!
//! TLS is on when `ca_file` is set (every endpoint; members' certificates are checked against
//! it) or for an endpoint written `https://HOST:PORT` (checked against the public web PKI when
//! there is no `ca_file`). `cert_file` and `key_file` are the edge's own certificate, for a
//! control plane that requires one (mutual TLS). The files are read at start (a missing or bad
//! one stops the edge, and `herald edge --check` names it) and again whenever they change, for
//! the next connection. Environment: `HERALD_CONTROL_CA`, `HERALD_CONTROL_CERT`,
//! `HERALD_CONTROL_KEY` (the same variables `herald ctl` reads).

use serde::Deserialize;
use std::path::PathBuf;

use crate::ConfigError;

/// `[control.tls]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ControlTlsConfig {
    /// PEM file of the CA(s) that sign the control-plane members' certificates; turns TLS on
    /// (env `HERALD_CONTROL_CA`).
    pub ca_file: Option<PathBuf>,
    /// PEM file of this edge's certificate chain, for mutual TLS (env `HERALD_CONTROL_CERT`).
    pub cert_file: Option<PathBuf>,
    /// PEM file of its private key (env `HERALD_CONTROL_KEY`).
    pub key_file: Option<PathBuf>,
}

impl ControlTlsConfig {
    /// Overlays `HERALD_CONTROL_CA`, `HERALD_CONTROL_CERT` and `HERALD_CONTROL_KEY`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        for (var, field) in [("HERALD_CONTROL_CA", &mut self.ca_file), ("HERALD_CONTROL_CERT", &mut self.cert_file), ("HERALD_CONTROL_KEY", &mut self.key_file)] {
            if let Some(v) = get(var).filter(|v| !v.is_empty()) {
                *field = Some(v.into());
            }
        }
    }

    /// Whether connections to `endpoint` use TLS.
    pub fn tls_for(&self, endpoint: &str) -> bool {
        self.ca_file.is_some() || endpoint.starts_with("https://")
    }

    /// Checks the settings against the endpoints they apply to (the files themselves are read
    /// by the binary, which names the field of one that cannot be used).
    pub fn validate(&self, endpoints: &[String]) -> Result<(), ConfigError> {
        let bad = |field: &'static str, message: &str| Err(ConfigError::Invalid { field, message: message.into() });
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => return bad("control.tls.key_file", "control.tls.cert_file needs its key_file (a client certificate and its key go together)"),
            (None, Some(_)) => return bad("control.tls.cert_file", "control.tls.key_file needs its cert_file (a client certificate and its key go together)"),
            _ => {}
        }
        if self.ca_file.is_some() && endpoints.iter().any(|e| e.starts_with("http://")) {
            return bad("control.endpoints", "an http:// endpoint with control.tls.ca_file set: write HOST:PORT or https://HOST:PORT (TLS is on for every endpoint)");
        }
        if self.cert_file.is_some() && !endpoints.iter().all(|e| self.tls_for(e)) {
            return bad("control.tls.cert_file", "a client certificate needs TLS to every endpoint: set control.tls.ca_file (or write every endpoint https://HOST:PORT)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ControlTlsConfig {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn a_ca_turns_tls_on_for_every_endpoint_and_https_for_its_own() {
        let c = parse("ca_file = \"/ca.pem\"\n");
        assert!(c.tls_for("control:7100") && c.tls_for("https://control:7100"));
        let c = ControlTlsConfig::default();
        assert!(!c.tls_for("control:7100") && c.tls_for("https://control:7100"));
    }

    #[test]
    fn inconsistent_settings_are_refused_naming_the_field() {
        let eps = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (toml, endpoints, field) in [
            ("ca_file = \"/ca\"\ncert_file = \"/c\"\n", eps(&["c:1"]), "control.tls.key_file"),
            ("ca_file = \"/ca\"\nkey_file = \"/k\"\n", eps(&["c:1"]), "control.tls.cert_file"),
            ("ca_file = \"/ca\"\n", eps(&["http://c:1"]), "control.endpoints"),
            ("cert_file = \"/c\"\nkey_file = \"/k\"\n", eps(&["c:1"]), "control.tls.cert_file"),
            ("cert_file = \"/c\"\nkey_file = \"/k\"\n", eps(&["https://c:1", "d:2"]), "control.tls.cert_file"),
        ] {
            let err = parse(toml).validate(&endpoints).expect_err(toml).to_string();
            assert!(err.contains(field), "{toml}: {err}");
        }
        parse("cert_file = \"/c\"\nkey_file = \"/k\"\n").validate(&eps(&["https://c:1"])).unwrap();
        parse("ca_file = \"/ca\"\ncert_file = \"/c\"\nkey_file = \"/k\"\n").validate(&eps(&["c:1", "https://d:2"])).unwrap();
    }

    #[test]
    fn the_environment_names_the_files() {
        let mut c = parse("ca_file = \"/from-file\"\n");
        c.apply_env(|k| match k {
            "HERALD_CONTROL_CA" => Some("/env/ca.pem".into()),
            "HERALD_CONTROL_CERT" => Some("/env/edge.pem".into()),
            "HERALD_CONTROL_KEY" => Some(String::new()),
            _ => None,
        });
        assert_eq!(c.ca_file, Some("/env/ca.pem".into()));
        assert_eq!(c.cert_file, Some("/env/edge.pem".into()));
        assert_eq!(c.key_file, None, "an empty variable sets nothing");
    }
}
