//! One HTTP/2 connection over TLS to one origin (APNs, FCM, Google's token endpoint), reused
//! for every request and made again when it breaks. HTTP/2 multiplexes, so one connection
//! carries all concurrent requests (APNs allows about a thousand streams per connection).

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// Longest response body read (error bodies are small JSON).
const MAX_BODY: usize = 64 << 10;
/// Connect plus TLS handshake, at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One request's response, at most.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A request that got no HTTP answer (the connection failed, or it timed out).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectionError(pub String);

/// An answer: status, headers and the (bounded) body.
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers (`retry-after`, `apns-id`).
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// An origin (`https://host:port`) and the connection to it.
pub struct Origin {
    host: String,
    port: u16,
    tls: TlsConnector,
    conn: tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
}

/// The TLS settings: `ca_file`'s certificates (PEM) or, without one, the public web roots; ALPN
/// `h2` only. An unreadable or empty CA file is an error naming it.
pub fn tls_config(ca_file: Option<&Path>, field: &str) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let file = std::fs::File::open(path).map_err(|e| format!("{field} {}: {e}", path.display()))?;
            let certs: Vec<CertificateDer<'static>> =
                rustls_pemfile::certs(&mut std::io::BufReader::new(file)).collect::<Result<_, _>>().map_err(|e| format!("{field} {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("{field} {}: no certificate in it", path.display()));
            }
            for c in certs {
                roots.add(c).map_err(|e| format!("{field} {}: {e}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

impl Origin {
    /// An origin for `https://HOST[:PORT]` (no connection yet).
    pub fn new(url: &str, tls: Arc<ClientConfig>) -> Result<Self, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!("{url}: must be https://"));
        }
        let host = uri.host().ok_or_else(|| format!("{url}: no host"))?.trim_matches(['[', ']']).to_owned();
        Ok(Self { port: uri.port_u16().unwrap_or(443), host, tls: TlsConnector::from(tls), conn: tokio::sync::Mutex::new(None) })
    }

    /// `host:port`, for logs.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ConnectionError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| ConnectionError(format!("{}: {what}: {e}", self.authority()));
        let connect = async {
            let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await.map_err(|e| fail("connect", &e))?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from(self.host.clone()).map_err(|e| fail("server name", &e))?;
            let tls = self.tls.connect(name, tcp).await.map_err(|e| fail("TLS", &e))?;
            let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(10))
                .handshake(TokioIo::new(tls))
                .await
                .map_err(|e| fail("HTTP/2 handshake", &e))?;
            let authority = self.authority();
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(origin = %authority, error = %e, "push: connection closed");
                }
            });
            Ok(send)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connect).await.map_err(|_| fail("connect", &"timed out"))?
    }

    /// A sender on the current connection, connecting first when there is none or it closed.
    async fn sender(&self) -> Result<SendRequest<Full<Bytes>>, ConnectionError> {
        let mut conn = self.conn.lock().await;
        if let Some(s) = conn.as_ref().filter(|s| !s.is_closed()) {
            return Ok(s.clone());
        }
        let s = self.connect().await?;
        *conn = Some(s.clone());
        Ok(s)
    }

    /// Sends `req` (its URI a path; scheme and authority are added) and reads the answer.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Answer, ConnectionError> {
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
        parts.uri = http::Uri::builder()
            .scheme("https")
            .authority(self.authority())
            .path_and_query(path)
            .build()
            .map_err(|e| ConnectionError(e.to_string()))?;
        let req = Request::from_parts(parts, body);
        let exchange = async {
            let mut sender = self.sender().await?;
            sender.ready().await.map_err(|e| ConnectionError(format!("{}: {e}", self.authority())))?;
            let resp = sender.send_request(req).await.map_err(|e| ConnectionError(format!("{}: {e}", self.authority())))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_BODY).collect().await.map_err(|e| ConnectionError(format!("{}: reading the answer: {e}", self.authority())))?.to_bytes();
            Ok(Answer { status: parts.status, headers: parts.headers, body })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.map_err(|_| ConnectionError(format!("{}: no answer within {REQUEST_TIMEOUT:?}", self.authority())))?
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by APNs or FCM and is ignored).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    v.parse::<u64>().ok().map(|s| Duration::from_secs(s.min(3600)))
}
