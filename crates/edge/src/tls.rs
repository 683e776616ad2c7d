//! TLS on the edge listener (rustls), with certificates reloaded from disk when they change.

use parking_lot::{Mutex, RwLock};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use herald_config::TlsConfig;

/// A certificate or key that cannot be used; the message names the setting and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or does not parse as PEM.
    #[error("edge.tls.{setting} {}: {source}", path.display())]
    Unreadable {
        /// `cert_file` or `key_file`.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no certificate or no private key.
    #[error("edge.tls.{setting} {}: no {what} in it", path.display())]
    Empty {
        /// `cert_file` or `key_file`.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What was looked for.
        what: &'static str,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("edge.tls: the certificate and key do not match, or cannot be used: {0}")]
    Refused(#[from] tokio_rustls::rustls::Error),
}

/// The current certificate, and where it comes from.
pub struct TlsReloader {
    current: RwLock<Arc<ServerConfig>>,
    cert_file: PathBuf,
    key_file: PathBuf,
    stamps: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

fn modified(p: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn unreadable(setting: &'static str, path: &Path) -> impl Fn(std::io::Error) -> TlsError {
    let path = path.to_owned();
    move |source| TlsError::Unreadable { setting, path: path.clone(), source }
}

/// Reads the certificate chain and key into a rustls server config (HTTP/1.1 only).
pub fn load(cert_file: &PathBuf, key_file: &PathBuf) -> Result<ServerConfig, TlsError> {
    let open = |setting, path: &PathBuf| std::fs::File::open(path).map(std::io::BufReader::new).map_err(unreadable(setting, path));
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut open("cert_file", cert_file)?).collect::<Result<_, _>>().map_err(unreadable("cert_file", cert_file))?;
    if certs.is_empty() {
        return Err(TlsError::Empty { setting: "cert_file", path: cert_file.clone(), what: "certificate" });
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut open("key_file", key_file)?)
        .map_err(unreadable("key_file", key_file))?
        .ok_or_else(|| TlsError::Empty { setting: "key_file", path: key_file.clone(), what: "private key" })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?.with_no_client_auth().with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl TlsReloader {
    /// Loads the files once; an error names the file.
    pub fn new(c: &TlsConfig) -> Result<Self, TlsError> {
        let config = load(&c.cert_file, &c.key_file)?;
        Ok(Self {
            current: RwLock::new(Arc::new(config)),
            stamps: Mutex::new((modified(&c.cert_file), modified(&c.key_file))),
            cert_file: c.cert_file.clone(),
            key_file: c.key_file.clone(),
        })
    }

    /// An acceptor with the current certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().clone())
    }

    /// Re-reads the files when either changed. A broken new pair keeps the old one (and says so).
    pub fn reload_if_changed(&self) {
        let now = (modified(&self.cert_file), modified(&self.key_file));
        {
            let mut stamps = self.stamps.lock();
            if *stamps == now {
                return;
            }
            *stamps = now;
        }
        match load(&self.cert_file, &self.key_file) {
            Ok(c) => {
                *self.current.write() = Arc::new(c);
                tracing::info!(cert = %self.cert_file.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::error!(error = %e, "TLS certificate changed but does not load; keeping the previous one"),
        }
    }

    /// Checks the files every `every` until `stop`.
    pub async fn watch(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => self.reload_if_changed(),
            }
        }
    }
}
