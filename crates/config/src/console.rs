//! `[console]`: the operator's web console on the admin listener (docs/console.md).

use serde::Deserialize;

use crate::ConfigError;

/// `[console]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console at `/console/` (on the admin listener; in `herald dev`, on the main
    /// listener). The login is the admin API key (`auth.admin_api_key`); without one there is
    /// no console.
    pub enabled: bool,
    /// How long a login lasts, seconds (60 to 86400).
    pub session_ttl_secs: u64,
    /// JSON pointers (`/user/email`) whose values the live tail shows as `"[redacted]"`, in
    /// every record of every channel.
    pub redact: Vec<String>,
    /// Records per second one live tail shows at most (1 to 1000); the rest are counted as
    /// skipped, never queued.
    pub tail_max_per_second: u32,
    /// The control plane's admin token, for the Cluster, Accounts and drain calls (env
    /// `HERALD_CONTROL_ADMIN_TOKEN`, as `herald ctl` reads it).
    pub control_admin_token: Option<String>,
    /// Replicators' metrics addresses (`http://HOST:PORT`, their `--metrics-listen`), for the
    /// Regions page.
    pub replicators: Vec<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self { enabled: true, session_ttl_secs: 8 * 3600, redact: Vec::new(), tail_max_per_second: 50, control_admin_token: None, replicators: Vec::new() }
    }
}

impl ConsoleConfig {
    /// Checks every value; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, message: String| Err(ConfigError::Invalid { field, message });
        if !(60..=86_400).contains(&self.session_ttl_secs) {
            return bad("console.session_ttl_secs", "must be between 60 and 86400".into());
        }
        if !(1..=1000).contains(&self.tail_max_per_second) {
            return bad("console.tail_max_per_second", "must be between 1 and 1000".into());
        }
        if let Some(p) = self.redact.iter().find(|p| !p.starts_with('/') || p.len() < 2) {
            return bad("console.redact", format!("each entry must be a JSON pointer such as /user/email, not {p:?}"));
        }
        if let Some(r) = self.replicators.iter().find(|r| !r.starts_with("http://") || r.len() <= "http://".len()) {
            return bad("console.replicators", format!("each entry must be http://HOST:PORT (a replicator's --metrics-listen), not {r:?}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_console_settings_are_refused_naming_the_field() {
        let c: ConsoleConfig = toml::from_str("redact = [\"/user/email\"]\n").unwrap();
        c.validate().unwrap();
        for (text, field) in [
            ("redact = [\"user.email\"]", "console.redact"),
            ("tail_max_per_second = 0", "console.tail_max_per_second"),
            ("session_ttl_secs = 5", "console.session_ttl_secs"),
            ("replicators = [\"repl:9400\"]", "console.replicators"),
        ] {
            let c: ConsoleConfig = toml::from_str(text).unwrap();
            assert!(c.validate().unwrap_err().to_string().contains(field), "{text}");
        }
    }
}
