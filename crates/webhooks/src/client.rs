//! Posting a batch to one endpoint: HTTP/1.1 over TCP, or over TLS (the public web's roots, or the
//! endpoint's own CA), one kept-alive connection per endpoint, made again after any failure.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

/// Why an endpoint's URL or CA file cannot be used (found at start, and by `--check`).
#[derive(Debug, thiserror::Error)]
#[error("endpoint {endpoint}: {problem}")]
pub struct TargetError {
    /// The endpoint's name.
    pub endpoint: String,
    /// What is wrong.
    pub problem: String,
}

/// Where one endpoint's requests go.
pub struct Target {
    host: String,
    port: u16,
    /// `Host` header value.
    authority: String,
    path: String,
    tls: Option<TlsConnector>,
}

impl Target {
    /// Parses `url` (`http://` or `https://`); for HTTPS, trusts the CAs of `ca_file` when
    /// given, else the public web's.
    pub fn new(endpoint: &str, url: &str, ca_file: Option<&str>) -> Result<Self, TargetError> {
        let bad = |problem: String| TargetError { endpoint: endpoint.to_owned(), problem };
        let uri: http::Uri = url.parse().map_err(|e| bad(format!("url {url:?}: {e}")))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad(format!("url {url:?} must start with http:// or https://"))),
        };
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| bad(format!("url {url:?} has no host")))?.trim_matches(['[', ']']).to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri.authority().map(|a| a.as_str().to_owned()).unwrap_or_else(|| host.clone());
        let path = uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
        if !https && ca_file.is_some() {
            return Err(bad("ca_file is set but the url is not https://".into()));
        }
        let tls = if https {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            match ca_file {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read ca_file {path}: {e}")))?;
                    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                        let cert = cert.map_err(|e| bad(format!("ca_file {path}: {e}")))?;
                        roots.add(cert).map_err(|e| bad(format!("ca_file {path}: {e}")))?;
                    }
                    if roots.is_empty() {
                        return Err(bad(format!("ca_file {path} holds no certificate")));
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
            let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| bad(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            ServerName::try_from(host.clone()).map_err(|e| bad(format!("host {host}: {e}")))?;
            Some(TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        Ok(Self { host, port, authority, path, tls })
    }
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
pub struct Poster {
    target: Arc<Target>,
    timeout: Duration,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl Poster {
    /// A poster to `target`; each attempt (connecting included) gets `timeout`.
    pub fn new(target: Arc<Target>, timeout: Duration) -> Self {
        Self { target, timeout, conn: None }
    }

    /// POSTs `body` with `signature` as `Herald-Signature`. `Ok` only for a 2xx answer.
    pub async fn post(&mut self, body: Bytes, signature: &str) -> Result<(), AttemptError> {
        let r = tokio::time::timeout(self.timeout, self.attempt(body, signature)).await;
        let r = r.unwrap_or_else(|_| Err(AttemptError { status: "timeout".into(), message: format!("no answer within {:?}", self.timeout) }));
        if r.is_err() {
            // Whatever went wrong, the next attempt starts on a new connection.
            self.conn = None;
        }
        r
    }

    async fn attempt(&mut self, body: Bytes, signature: &str) -> Result<(), AttemptError> {
        let io = |status: &str| {
            let status = status.to_owned();
            move |e: &dyn std::fmt::Display| AttemptError { status: status.clone(), message: e.to_string() }
        };
        if self.conn.as_ref().is_none_or(|c| c.is_closed()) {
            self.conn = Some(self.connect().await?);
        }
        let conn = self.conn.as_mut().expect("connected above");
        conn.ready().await.map_err(|e| io("io")(&e))?;
        let req = http::Request::post(&self.target.path)
            .header(http::header::HOST, &self.target.authority)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, concat!("herald-webhooks/", env!("CARGO_PKG_VERSION")))
            .header(crate::signature::HEADER, signature)
            .body(Full::new(body))
            .map_err(|e| io("io")(&e))?;
        let resp = conn.send_request(req).await.map_err(|e| io("io")(&e))?;
        let status = resp.status();
        // Read (and drop) the answer, so that the connection can carry the next request.
        let _ = http_body_util::Limited::new(resp.into_body(), 64 << 10).collect().await;
        if status.is_success() { Ok(()) } else { Err(AttemptError { status: status.as_u16().to_string(), message: format!("answered {status}") }) }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, AttemptError> {
        let fail = |status: &str, e: &dyn std::fmt::Display| AttemptError { status: status.into(), message: format!("{}:{}: {e}", self.target.host, self.target.port) };
        let tcp = tokio::net::TcpStream::connect((self.target.host.as_str(), self.target.port)).await.map_err(|e| fail("connect", &e))?;
        let _ = tcp.set_nodelay(true);
        match &self.target.tls {
            None => {
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| fail("connect", &e))?;
                tokio::spawn(conn);
                Ok(send)
            }
            Some(tls) => {
                let name = ServerName::try_from(self.target.host.clone()).map_err(|e| fail("tls", &e))?;
                let stream = tls.connect(name, tcp).await.map_err(|e| fail("tls", &e))?;
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| fail("connect", &e))?;
                tokio::spawn(conn);
                Ok(send)
            }
        }
    }
}
