//! `[tracing]`: OpenTelemetry traces sent over OTLP (docs/operations.md, "Traces"). Off unless
//! an endpoint is set.

use serde::Deserialize;

use crate::ConfigError;

/// How spans reach the collector.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    /// OTLP/gRPC (the collector's port 4317).
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318, path `/v1/traces`).
    Http,
}

/// `[tracing]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// The collector, `http://HOST:PORT` (gRPC) or `http://HOST:PORT/v1/traces` (HTTP); unset:
    /// no traces (env `HERALD_OTLP_ENDPOINT`).
    pub endpoint: Option<String>,
    /// `grpc` or `http`.
    pub protocol: OtlpProtocol,
    /// The share of publishes traced when the publisher sent no sampled `traceparent` (0 to 1);
    /// a publisher's sampling decision is always followed.
    pub sampling_ratio: f64,
    /// `service.name` on every span.
    pub service_name: String,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self { endpoint: None, protocol: OtlpProtocol::Grpc, sampling_ratio: 0.01, service_name: "herald".into() }
    }
}

impl TracingConfig {
    /// Checks every value; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, message: String| Err(ConfigError::Invalid { field, message });
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return bad("tracing.sampling_ratio", format!("must be between 0 and 1, not {}", self.sampling_ratio));
        }
        if self.service_name.is_empty() {
            return bad("tracing.service_name", "must not be empty".into());
        }
        if let Some(e) = &self.endpoint {
            let Some(rest) = e.strip_prefix("http://") else {
                return bad("tracing.endpoint", format!("must be http://HOST:PORT[/PATH] (plaintext, e.g. a collector on the node), not {e:?}"));
            };
            let authority = rest.split('/').next().unwrap_or("");
            if authority.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) {
                return bad("tracing.endpoint", format!("must name a host and a port, e.g. http://otel-collector:4317, not {e:?}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracing_is_off_by_default_and_bad_settings_name_their_field() {
        let c = TracingConfig::default();
        assert_eq!(c.endpoint, None);
        c.validate().unwrap();
        let c: TracingConfig = toml::from_str("endpoint = \"http://127.0.0.1:4318/v1/traces\"\nprotocol = \"http\"\nsampling_ratio = 1.0\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.protocol, OtlpProtocol::Http);
        for (text, field) in [
            ("sampling_ratio = 1.5", "tracing.sampling_ratio"),
            ("endpoint = \"https://collector:4317\"", "tracing.endpoint"),
            ("endpoint = \"http://collector\"", "tracing.endpoint"),
            ("service_name = \"\"", "tracing.service_name"),
        ] {
            let c: TracingConfig = toml::from_str(text).unwrap();
            assert!(c.validate().unwrap_err().to_string().contains(field), "{text}");
        }
        assert!(toml::from_str::<TracingConfig>("protocol = \"udp\"").is_err());
    }
}
