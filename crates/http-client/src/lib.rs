//! Herald's outbound HTTP/1.1 client: webhooks post their batches with it, the edge asks the
//! authorization proxy with it, and the Rust SDK reads history with it. One small thing shared
//! instead of three copies: a parsed target (`http://` or `https://`, the public web's roots or
//! a CA file), and a [`Connection`] that keeps one connection alive, makes it again after any
//! failure, and bounds every attempt (connecting included) by a timeout.
//!
//! # Layout
//! - [`Target`]: where requests go, checked once (by `--check` too).
//! - [`Connection`]: one kept-alive connection to a target; [`Response`], [`AttemptError`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

/// Why a URL or CA file cannot be used (found at start, and by `--check`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

/// Where one caller's requests go.
pub struct Target {
    host: String,
    port: u16,
    /// `Host` header value.
    authority: String,
    /// The URL's path and query.
    path: String,
    tls: Option<TlsConnector>,
}

impl Target {
    /// Parses `url` (`http://` or `https://`); for HTTPS, trusts the CAs of `ca_file` when
    /// given, else the public web's.
    pub fn new(url: &str, ca_file: Option<&str>) -> Result<Self, TargetError> {
        let bad = |problem: String| TargetError(problem);
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

    /// `host:port`, for logs.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The URL's path and query (`/` when it has none).
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// `v` percent-encoded for a URL's query (everything but the unreserved characters).
pub fn query_value(v: &str) -> String {
    v.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// How one attempt failed.
#[derive(Debug, Clone)]
pub struct AttemptError {
    /// `connect`, `tls`, `timeout` or `io` (a metric label).
    pub kind: &'static str,
    /// For logs.
    pub message: String,
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// An answer: its status and its body (read whole, up to the caller's limit).
#[derive(Debug, Clone)]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: Bytes,
}

/// One connection to a target, opened when needed and made again after any failure.
pub struct Connection {
    target: Arc<Target>,
    timeout: Duration,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    /// A connection to `target`; each attempt (connecting included) gets `timeout`.
    pub fn new(target: Arc<Target>, timeout: Duration) -> Self {
        Self { target, timeout, conn: None }
    }

    /// Sends one request to `path` (the target's own when `None`) and reads the answer's body
    /// up to `max_body` bytes (a longer body is an `io` error). Any status is an `Ok`.
    pub async fn send(&mut self, method: Method, path: Option<&str>, headers: &[(HeaderName, HeaderValue)], body: Bytes, max_body: usize) -> Result<Response, AttemptError> {
        let r = tokio::time::timeout(self.timeout, self.attempt(method, path, headers, body, max_body)).await;
        let r = r.unwrap_or_else(|_| Err(AttemptError { kind: "timeout", message: format!("no answer within {:?}", self.timeout) }));
        if r.is_err() {
            // Whatever went wrong, the next attempt starts on a new connection.
            self.conn = None;
        }
        r
    }

    async fn attempt(&mut self, method: Method, path: Option<&str>, headers: &[(HeaderName, HeaderValue)], body: Bytes, max_body: usize) -> Result<Response, AttemptError> {
        let io = |e: &dyn std::fmt::Display| AttemptError { kind: "io", message: e.to_string() };
        if self.conn.as_ref().is_none_or(|c| c.is_closed()) {
            self.conn = Some(self.connect().await?);
        }
        let conn = self.conn.as_mut().expect("connected above");
        conn.ready().await.map_err(|e| io(&e))?;
        let mut req = http::Request::builder().method(method).uri(path.unwrap_or(&self.target.path)).header(http::header::HOST, &self.target.authority);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let req = req.body(Full::new(body)).map_err(|e| io(&e))?;
        let resp = conn.send_request(req).await.map_err(|e| io(&e))?;
        let status = resp.status();
        // Read the whole answer, so that the connection can carry the next request.
        let body = http_body_util::Limited::new(resp.into_body(), max_body).collect().await.map_err(|e| io(&format!("answer body: {e}")))?.to_bytes();
        Ok(Response { status, body })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, AttemptError> {
        let stream = self.target.open().await?;
        let fail = |e: hyper::Error| AttemptError { kind: "connect", message: format!("{}: {e}", self.target.address()) };
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(fail)?;
        tokio::spawn(conn);
        Ok(send)
    }
}

impl Target {
    /// Opens a connection to the target: TCP (Nagle off), with TLS for `https://`. For callers
    /// that speak something else over it (the Rust SDK's WebSocket).
    pub async fn open(&self) -> Result<Stream, AttemptError> {
        let fail = |kind: &'static str, e: &dyn std::fmt::Display| AttemptError { kind, message: format!("{}:{}: {e}", self.host, self.port) };
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await.map_err(|e| fail("connect", &e))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Stream::Plain(tcp)),
            Some(tls) => {
                let name = ServerName::try_from(self.host.clone()).map_err(|e| fail("tls", &e))?;
                let stream = tls.connect(name, tcp).await.map_err(|e| fail("tls", &e))?;
                Ok(Stream::Tls(Box::new(stream)))
            }
        }
    }
}

/// A connection [`Target::open`] made: plain TCP, or TLS over it.
pub enum Stream {
    /// `http://`.
    Plain(tokio::net::TcpStream),
    /// `https://`.
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_once() {
        assert!(Target::new("http://127.0.0.1:8080/hooks?x=1", None).is_ok_and(|t| t.path() == "/hooks?x=1"));
        assert!(Target::new("https://example.com", None).is_ok_and(|t| t.path() == "/"));
        for bad in ["ftp://x", "not a url", "http://", "http://x/y"] {
            assert!(Target::new(bad, if bad == "http://x/y" { Some("/ca.pem") } else { None }).is_err(), "{bad} was accepted");
        }
        assert!(Target::new("https://x", Some("/no/such/ca.pem")).err().is_some_and(|e| e.0.contains("cannot read ca_file")));
    }

    #[tokio::test]
    async fn a_request_gets_its_answer_and_a_dead_server_a_connect_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            assert!(req.starts_with("POST /ask HTTP/1.1"), "{req}");
            s.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\nno").await.unwrap();
        });
        let mut c = Connection::new(Arc::new(Target::new(&format!("http://{addr}/ask"), None).unwrap()), Duration::from_secs(5));
        let r = c.send(Method::POST, None, &[], Bytes::from_static(b"{}"), 1024).await.unwrap();
        assert_eq!((r.status, &r.body[..]), (StatusCode::FORBIDDEN, &b"no"[..]));
        drop(c);
        let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let mut c = Connection::new(Arc::new(Target::new(&format!("http://{free}/"), None).unwrap()), Duration::from_secs(5));
        assert_eq!(c.send(Method::GET, None, &[], Bytes::new(), 1024).await.unwrap_err().kind, "connect");
    }
}
