//! Posting a batch to one endpoint, over `herald-http-client` (HTTP/1.1, plain or TLS, one
//! kept-alive connection per endpoint, made again after any failure).

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use herald_http_client::Connection;
pub use herald_http_client::Target;
use std::sync::Arc;
use std::time::Duration;

/// Why an endpoint's URL or CA file cannot be used (found at start, and by `--check`).
#[derive(Debug, thiserror::Error)]
#[error("endpoint {endpoint}: {problem}")]
pub struct TargetError {
    /// The endpoint's name.
    pub endpoint: String,
    /// What is wrong.
    pub problem: String,
}

/// The endpoint's target, its URL and CA file checked.
pub fn target(endpoint: &str, url: &str, ca_file: Option<&str>) -> Result<Target, TargetError> {
    Target::new(url, ca_file).map_err(|e| TargetError { endpoint: endpoint.to_owned(), problem: e.0 })
}

/// How one attempt failed: the `status` label of `herald_webhooks_failed_total` and a message.
#[derive(Debug)]
pub struct AttemptError {
    /// An HTTP status (`503`), or `connect`, `tls`, `timeout`, `io`.
    pub status: String,
    /// For logs.
    pub message: String,
}

/// A connection to one endpoint, opened when needed.
pub struct Poster(Connection);

impl Poster {
    /// A poster to `target`; each attempt (connecting included) gets `timeout`.
    pub fn new(target: Arc<Target>, timeout: Duration) -> Self {
        Self(Connection::new(target, timeout))
    }

    /// POSTs `body` with `signature` as `Herald-Signature`. `Ok` only for a 2xx answer.
    pub async fn post(&mut self, body: Bytes, signature: &str) -> Result<(), AttemptError> {
        let signature = HeaderValue::from_str(signature).map_err(|e| AttemptError { status: "io".into(), message: e.to_string() })?;
        let headers = [
            (http::header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (http::header::USER_AGENT, HeaderValue::from_static(concat!("herald-webhooks/", env!("CARGO_PKG_VERSION")))),
            (HeaderName::from_bytes(crate::signature::HEADER.as_bytes()).expect("a constant, valid header name"), signature),
        ];
        match self.0.send(http::Method::POST, None, &headers, body, 64 << 10).await {
            Ok(r) if r.status.is_success() => Ok(()),
            Ok(r) => Err(AttemptError { status: r.status.as_u16().to_string(), message: format!("answered {}", r.status) }),
            Err(e) => Err(AttemptError { status: e.kind.into(), message: e.message }),
        }
    }
}
