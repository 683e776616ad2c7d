//! TLS on the control plane's gRPC port, and on every connection to it.
//!
//! Both sides re-read their PEM files when they change, so certificates rotate without a
//! restart: each new connection first looks at the files (a `stat` each) and, when one changed,
//! loads them again. A pair that does not load (a certificate written before its key, say) keeps
//! the previous one in use and is logged; the next connection tries again. The edge's listener
//! does the same (`herald_edge::tls`).
//!
//! # Layout
//! - [`PemFile`]: a file and the flag or config field that names it in errors.
//! - [`ServerTls`]: a member's certificate chain and key, and the client CA that turns on mutual
//!   TLS; [`ServerTls::incoming`] turns a TCP listener into TLS connections for tonic.
//! - [`ClientTls`]: the CA the control plane's certificates are checked against, and the
//!   client's own certificate for mutual TLS; [`crate::network::channel`] connects with it.
//! - `Reloading`: a value built from files, rebuilt when one of them changes.

use parking_lot::{Mutex, RwLock};
use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_util::sync::CancellationToken;

/// A PEM file, and what names it to the operator (`--tls-cert`, `control.tls.ca_file`).
#[derive(Clone, Debug)]
pub struct PemFile {
    /// The flag or config field, for errors.
    pub name: String,
    /// The file.
    pub path: PathBuf,
}

impl PemFile {
    /// `path`, named `name` in errors.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self { name: name.into(), path: path.into() }
    }
}

/// Why TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file is missing, unreadable or holds no usable PEM.
    #[error("{name} {path}: {message}")]
    File {
        /// The flag or config field.
        name: String,
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The files do not go together (a key that is not the certificate's, a certificate without
    /// a key).
    #[error("{0}")]
    Mismatch(String),
}

fn file_error(f: &PemFile, message: impl std::fmt::Display) -> TlsError {
    TlsError::File { name: f.name.clone(), path: f.path.display().to_string(), message: message.to_string() }
}

fn open(f: &PemFile) -> Result<std::io::BufReader<std::fs::File>, TlsError> {
    Ok(std::io::BufReader::new(std::fs::File::open(&f.path).map_err(|e| file_error(f, e))?))
}

fn read_certs(f: &PemFile) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut open(f)?).collect::<Result<_, _>>().map_err(|e| file_error(f, e))?;
    if certs.is_empty() {
        return Err(file_error(f, "no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)"));
    }
    Ok(certs)
}

fn read_key(f: &PemFile) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut open(f)?)
        .map_err(|e| file_error(f, e))?
        .ok_or_else(|| file_error(f, "no private key in it (expected PEM: PKCS#8, PKCS#1 or SEC1)"))
}

fn read_roots(f: &PemFile) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(f)? {
        roots.add(cert).map_err(|e| file_error(f, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

fn provider() -> Arc<tokio_rustls::rustls::crypto::CryptoProvider> {
    Arc::new(tokio_rustls::rustls::crypto::ring::default_provider())
}

/// What identifies a file's content without reading it: modification time, size, inode (a
/// Kubernetes Secret update swaps a symlink to new files, which changes the inode).
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(p: &PathBuf) -> Stamp {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// A value built from files, rebuilt when one of them changes.
struct Reloading<T> {
    paths: Vec<PathBuf>,
    stamps: Mutex<Vec<Stamp>>,
    current: RwLock<Arc<T>>,
}

impl<T> Reloading<T> {
    /// Builds the value once; an error is the caller's (start-up fails on it).
    fn new(paths: Vec<PathBuf>, load: impl FnOnce() -> Result<T, TlsError>) -> Result<Self, TlsError> {
        // Stamped before reading: a change during the read is seen at the next look.
        let stamps = paths.iter().map(stamp).collect();
        Ok(Self { current: RwLock::new(Arc::new(load()?)), stamps: Mutex::new(stamps), paths })
    }

    /// The current value, rebuilt first if a file changed. A rebuild that fails keeps the
    /// previous value.
    fn get(&self, what: &str, load: impl FnOnce() -> Result<T, TlsError>) -> Arc<T> {
        let now: Vec<Stamp> = self.paths.iter().map(stamp).collect();
        {
            let mut stamps = self.stamps.lock();
            if *stamps == now {
                return self.current.read().clone();
            }
            *stamps = now;
        }
        match load() {
            Ok(v) => {
                *self.current.write() = Arc::new(v);
                tracing::info!(files = ?self.paths, "control plane: {what} reloaded");
            }
            Err(e) => tracing::error!(error = %e, "control plane: {what} changed but does not load; keeping the previous one"),
        }
        self.current.read().clone()
    }
}

/// The files of a member's TLS listener.
#[derive(Clone, Debug)]
pub struct ServerTlsFiles {
    /// The certificate chain (leaf first).
    pub cert: PemFile,
    /// Its private key.
    pub key: PemFile,
    /// With it, mutual TLS: only clients with a certificate this CA signed get in.
    pub client_ca: Option<PemFile>,
}

/// TLS on a member's gRPC port (HTTP/2 only), re-read when its files change.
pub struct ServerTls {
    files: ServerTlsFiles,
    config: Reloading<ServerConfig>,
}

fn server_config(f: &ServerTlsFiles) -> Result<ServerConfig, TlsError> {
    let certs = read_certs(&f.cert)?;
    let key = read_key(&f.key)?;
    let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().map_err(|e| TlsError::Mismatch(e.to_string()))?;
    let builder = match &f.client_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(read_roots(ca)?), provider()).build().map_err(|e| file_error(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Mismatch(format!("{} and {} do not go together ({} is not the key of that certificate?): {e}", f.cert.name, f.key.name, f.key.path.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("files", &self.files).finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the files once; an error names the flag or field of the file at fault.
    pub fn new(files: ServerTlsFiles) -> Result<Self, TlsError> {
        let paths = [&files.cert, &files.key].into_iter().chain(&files.client_ca).map(|f| f.path.clone()).collect();
        let config = Reloading::new(paths, || server_config(&files))?;
        Ok(Self { files, config })
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// The configuration for the next connection (re-read first if a file changed).
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.get("server certificate", || server_config(&self.files))
    }

    /// Accepts on `listener` until `stop`, and yields each connection once its TLS handshake
    /// is done. Handshakes run side by side (a slow client holds up no other) and have 10 s.
    pub fn incoming(self: Arc<Self>, listener: TcpListener, stop: CancellationToken) -> tokio_stream::wrappers::ReceiverStream<Result<TlsConn, std::io::Error>> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tx.closed() => return,
                    r = listener.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!(error = %e, "control plane: accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let _ = tcp.set_nodelay(true);
                let info = tonic::transport::server::TcpConnectInfo { local_addr: tcp.local_addr().ok(), remote_addr: Some(peer) };
                let acceptor = tokio_rustls::TlsAcceptor::from(self.config());
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp).into_fallible()).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send(Ok(TlsConn { inner: tls, info })).await;
                        }
                        // A TCP probe (Kubernetes' tcpSocket) connects and closes: not worth a warning.
                        Ok(Err((e, _))) if e.kind() == std::io::ErrorKind::UnexpectedEof => tracing::debug!(%peer, "control plane: closed before the TLS handshake"),
                        Ok(Err((e, tcp))) => {
                            tracing::warn!(%peer, error = %e, "control plane: TLS handshake refused");
                            close_gently(tcp).await;
                        }
                        Err(_) => tracing::debug!(%peer, "control plane: TLS handshake timed out"),
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}

/// Closes a refused connection so that the client reads the TLS alert saying why. Closed at
/// once, with the client's first request unread, the socket would be reset and the client would
/// see only "connection reset" (with TLS 1.3 a client learns that its certificate was refused
/// after it has sent that request).
async fn close_gently(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.shutdown().await;
    let mut buf = [0u8; 4096];
    let drain = async { while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

/// One accepted TLS connection, as tonic's server takes it.
pub struct TlsConn {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: tonic::transport::server::TcpConnectInfo,
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// `AsyncWrite` for a wrapper whose writes go straight through to its `inner` stream.
macro_rules! write_through {
    ($wrapper:ty) => {
        impl AsyncWrite for $wrapper {
            fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
                Pin::new(&mut self.inner).poll_write(cx, buf)
            }

            fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
                Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }

            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
                Pin::new(&mut self.inner).poll_flush(cx)
            }

            fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
                Pin::new(&mut self.inner).poll_shutdown(cx)
            }
        }
    };
}

write_through!(TlsConn);

/// The files of a client of the control plane (an edge, `herald ctl`, a member reaching the
/// others).
#[derive(Clone, Debug, Default)]
pub struct ClientTlsFiles {
    /// The CA(s) the control plane's certificates are checked against (none: the public web
    /// PKI, for `https://` endpoints with publicly trusted certificates).
    pub ca: Option<PemFile>,
    /// This client's certificate chain, for mutual TLS.
    pub cert: Option<PemFile>,
    /// Its private key.
    pub key: Option<PemFile>,
}

/// How a client checks the control plane and proves who it is, re-read when its files change.
pub struct ClientTls {
    files: ClientTlsFiles,
    config: Reloading<ClientConfig>,
}

fn client_config(f: &ClientTlsFiles) -> Result<ClientConfig, TlsError> {
    let roots = match &f.ca {
        Some(ca) => read_roots(ca)?,
        None => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Mismatch(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match (&f.cert, &f.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .map_err(|e| TlsError::Mismatch(format!("{} and {} do not go together: {e}", cert.name, key.name)))?,
        (None, None) => builder.with_no_client_auth(),
        (Some(c), None) => return Err(TlsError::Mismatch(format!("{} needs a key file too (a client certificate and its key go together)", c.name))),
        (None, Some(k)) => return Err(TlsError::Mismatch(format!("{} needs a certificate file too (a client certificate and its key go together)", k.name))),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("files", &self.files).finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Loads the files once; an error names the flag or field of the file at fault.
    pub fn new(files: ClientTlsFiles) -> Result<Self, TlsError> {
        let paths = files.ca.iter().chain(&files.cert).chain(&files.key).map(|f| f.path.clone()).collect();
        let config = Reloading::new(paths, || client_config(&files))?;
        Ok(Self { files, config })
    }

    /// No files: servers are checked against the public web PKI, no client certificate.
    pub fn public() -> Arc<Self> {
        static PUBLIC: OnceLock<Arc<ClientTls>> = OnceLock::new();
        PUBLIC.get_or_init(|| Arc::new(Self::new(ClientTlsFiles::default()).expect("the built-in roots load"))).clone()
    }

    /// The CA file, if any.
    pub fn ca(&self) -> Option<&PemFile> {
        self.files.ca.as_ref()
    }

    /// Whether a client certificate is presented when a server asks for one.
    pub fn has_client_cert(&self) -> bool {
        self.files.cert.is_some()
    }

    /// The configuration for the next connection (re-read first if a file changed).
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.get("client certificate and CA", || client_config(&self.files))
    }
}

/// Makes the TCP connection and the TLS handshake for a tonic channel, with the files as they
/// are at that moment. Every reconnect goes through it, so new files take effect at the next
/// connection without rebuilding the channel.
#[derive(Clone)]
pub(crate) struct Connector {
    tls: Arc<ClientTls>,
    host: String,
    port: u16,
    name: ServerName<'static>,
}

impl Connector {
    /// For `host:port` (`[v6]:port` for IPv6); the certificate must name `host`.
    pub(crate) fn new(tls: Arc<ClientTls>, host_port: &str) -> Result<Self, String> {
        let (host, port) = host_port.rsplit_once(':').ok_or_else(|| format!("{host_port:?} is not HOST:PORT"))?;
        let port = port.parse().map_err(|_| format!("{host_port:?}: the port is not a number"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let name = ServerName::try_from(host.clone()).map_err(|e| format!("{host_port:?}: {e}"))?;
        Ok(Self { tls, host, port, name })
    }
}

impl tonic::codegen::Service<tonic::codegen::http::Uri> for Connector {
    type Response = hyper_util::rt::TokioIo<Confirmed>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: tonic::codegen::http::Uri) -> Self::Future {
        let (config, host, port, name) = (self.tls.config(), self.host.clone(), self.port, self.name.clone());
        Box::pin(async move {
            let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| std::io::Error::new(e.kind(), format!("cannot connect to {host}:{port}: {e}")))?;
            tcp.set_nodelay(true)?;
            let mut tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("TLS handshake with {host}:{port} failed: {e}")))?;
            // With TLS 1.3 a server refuses a client certificate (or its absence) only after the
            // client's side of the handshake is done, in its first message. Waiting for that
            // message (an HTTP/2 server sends its SETTINGS at once) makes a refusal a connect
            // error that names the reason, instead of a connection that closes under the first
            // call. A server that says nothing within the connect timeout is used as it is.
            use tokio::io::AsyncReadExt;
            let mut head = vec![0u8; 4096];
            let n = match tokio::time::timeout(Duration::from_secs(2), tls.read(&mut head)).await {
                Ok(Ok(0)) => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("{host}:{port} closed the connection after the TLS handshake"))),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(std::io::Error::new(e.kind(), format!("{host}:{port} refused the connection after the TLS handshake: {e}"))),
                Err(_) => 0,
            };
            head.truncate(n);
            Ok(hyper_util::rt::TokioIo::new(Confirmed { head, inner: tls }))
        })
    }
}

/// A client TLS stream whose first bytes were read to see the server accept it; they are read
/// again from here first.
pub(crate) struct Confirmed {
    head: Vec<u8>,
    inner: tokio_rustls::client::TlsStream<TcpStream>,
}

impl AsyncRead for Confirmed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if !self.head.is_empty() {
            let n = self.head.len().min(buf.remaining());
            buf.put_slice(&self.head[..n]);
            self.head.drain(..n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

write_through!(Confirmed);
