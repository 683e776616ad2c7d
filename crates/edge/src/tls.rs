//! TLS on the edge listener (rustls), with certificates reloaded from disk when they change.

use parking_lot::{Mutex, RwLock};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use herald_config::TlsConfig;

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

/// Reads the certificate chain and key into a rustls server config (HTTP/1.1 only).
pub fn load(cert_file: &PathBuf, key_file: &PathBuf) -> Result<ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert_file).map_err(|e| format!("edge.tls.cert_file {}: {e}", cert_file.display()))?,
    ))
    .collect::<Result<_, _>>()
    .map_err(|e| format!("edge.tls.cert_file {}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!("edge.tls.cert_file {}: no certificate in it", cert_file.display()));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key_file).map_err(|e| format!("edge.tls.key_file {}: {e}", key_file.display()))?,
    ))
    .map_err(|e| format!("edge.tls.key_file {}: {e}", key_file.display()))?
    .ok_or_else(|| format!("edge.tls.key_file {}: no private key in it", key_file.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("edge.tls: certificate and key do not match: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl TlsReloader {
    /// Loads the files once; an error names the file.
    pub fn new(c: &TlsConfig) -> Result<Self, String> {
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
