//! Test certificates: a CA, a server certificate for `127.0.0.1`/`localhost`, a client
//! certificate, an expired client certificate and an unrelated CA, as PEM files in a temporary
//! directory removed on drop. For tests of every TLS link (Kafka, Redis, the control plane).

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, date_time_ymd};
use std::path::PathBuf;

/// The files, in [`Pki::dir`]: `ca.pem`, `other-ca.pem` (a CA nobody uses), `server.pem` +
/// `server.key`, `client.pem` + `client.key`, `expired.pem` + `expired.key`.
pub struct Pki {
    /// Where the files are.
    pub dir: PathBuf,
}

impl Pki {
    /// Makes a new set under a fresh directory named after `name`.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("herald-pki-{name}-{}-{:08x}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let write = |file: &str, text: String| std::fs::write(dir.join(file), text).expect("writing a test certificate");
        let ca = |cn: &str| {
            let key = KeyPair::generate().expect("a key");
            let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, cn);
            let cert = p.self_signed(&key).expect("a CA certificate");
            (cert, key)
        };
        let (ca_cert, ca_key) = ca("herald test ca");
        write("ca.pem", ca_cert.pem());
        let (other_ca, _) = ca("someone else's ca");
        write("other-ca.pem", other_ca.pem());
        let leaf = |sans: Vec<String>, cn: &str, expired: bool| {
            let key = KeyPair::generate().expect("a key");
            let mut p = CertificateParams::new(sans).expect("params");
            p.distinguished_name.push(DnType::CommonName, cn);
            if expired {
                p.not_before = date_time_ymd(2020, 1, 1);
                p.not_after = date_time_ymd(2021, 1, 1);
            }
            let cert = p.signed_by(&key, &ca_cert, &ca_key).expect("a leaf certificate");
            (cert.pem(), key.serialize_pem())
        };
        for (name, sans, cn, expired) in [
            ("server", vec!["127.0.0.1".to_owned(), "localhost".to_owned()], "server", false),
            ("client", Vec::new(), "herald", false),
            ("expired", Vec::new(), "herald-expired", true),
        ] {
            let (c, k) = leaf(sans, cn, expired);
            write(&format!("{name}.pem"), c);
            write(&format!("{name}.key"), k);
        }
        Self { dir }
    }

    /// The path of one of the files, as a string.
    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).to_str().expect("a UTF-8 temporary path").to_owned()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
