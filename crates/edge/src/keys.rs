//! Token verification keys: a set of keys active at once (rotation), each bound to one
//! algorithm, optionally to a `kid` and to one account, from config and from a JWKS file.
//!
//! A token is tried only against keys of the algorithm its header names, and the header's
//! algorithm must be one of the four accepted: `alg: none` and algorithm confusion (an HS256 token
//! "signed" with an RSA public key as the secret) cannot succeed, because an RSA, EC or Ed25519
//! key is never used as an HMAC secret.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use std::path::{Path, PathBuf};

use herald_config::AuthConfig;
use herald_core::AccountId;

/// A verification key that cannot be used: where it comes from (`at`: `auth.keys[1] (kid k)`,
/// `auth.jwks_url https://…`) and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {problem}")]
pub struct KeyError {
    /// Which key or key source.
    pub at: String,
    /// What is wrong.
    pub problem: KeyProblem,
}

/// What is wrong with a verification key or key source.
#[derive(Debug, thiserror::Error)]
pub enum KeyProblem {
    /// A file named by the config cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not one of HS256, RS256, ES256, EdDSA (or HS256 where only public keys may be given).
    #[error("algorithm must be {allowed}, not {given}")]
    Algorithm {
        /// What was given.
        given: String,
        /// What is allowed here.
        allowed: &'static str,
    },
    /// An HS256 key without its secret.
    #[error("no secret")]
    NoSecret,
    /// An HS256 secret too short to resist guessing.
    #[error("an HS256 secret must be at least 16 bytes")]
    ShortSecret,
    /// A public-key entry without its key.
    #[error("no public key")]
    NoPublicKey,
    /// A key without the `kid` it must have.
    #[error("a kid is required")]
    NoKid,
    /// The key material does not parse.
    #[error("not a valid {alg:?} key: {source}")]
    BadKey {
        /// The algorithm it was read for.
        alg: Algorithm,
        /// Why.
        source: jsonwebtoken::errors::Error,
    },
    /// A symmetric key in a JWKS (those are published; a secret must not be).
    #[error("key {kid}: symmetric keys do not belong in a JWKS")]
    SymmetricJwk {
        /// The key's id.
        kid: String,
    },
    /// The document is not a JWKS.
    #[error("not a JWKS document: {0}")]
    NotJwks(serde_json::Error),
    /// The JWKS URL could not be fetched.
    #[error("{0}")]
    Fetch(String),
    /// The config names no key at all.
    #[error("set auth.jwt_secret (HERALD_JWT_SECRET), auth.keys, auth.jwks_file or auth.jwks_url")]
    NoKeys,
}

const PUBLIC_ALGORITHMS: &str = "RS256, ES256 or EdDSA";

/// One verification key.
pub struct VerifyKey {
    /// The `kid` it answers to (none: tokens without a `kid`).
    pub kid: Option<String>,
    /// Its algorithm.
    pub alg: Algorithm,
    /// The key.
    pub key: DecodingKey,
    /// The only account it may sign for, if bound.
    pub account: Option<AccountId>,
}

fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "HS256" => Some(Algorithm::HS256),
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// Whether Herald accepts tokens of this algorithm at all.
pub fn accepted(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA)
}

/// Loads every key the config names. The error says which key is wrong.
pub fn load(auth: &AuthConfig) -> Result<Vec<VerifyKey>, KeyError> {
    let mut keys = Vec::new();
    if let Some(secret) = &auth.jwt_secret {
        keys.push(VerifyKey { kid: None, alg: Algorithm::HS256, key: DecodingKey::from_secret(secret.as_bytes()), account: None });
    }
    for (i, k) in auth.keys.iter().enumerate() {
        let at = || format!("auth.keys[{i}]{}", k.kid.as_deref().map(|kid| format!(" (kid {kid})")).unwrap_or_default());
        let fail = |problem: KeyProblem| KeyError { at: at(), problem };
        let unreadable = |path: &Path, source| fail(KeyProblem::Unreadable { path: path.to_owned(), source });
        let alg = algorithm(&k.algorithm).ok_or_else(|| fail(KeyProblem::Algorithm { given: k.algorithm.clone(), allowed: "HS256, RS256, ES256 or EdDSA" }))?;
        let key = if alg == Algorithm::HS256 {
            let secret = match (&k.secret, &k.secret_file) {
                (Some(s), _) => s.clone(),
                (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| unreadable(f, e))?.trim_end_matches(['\r', '\n']).to_owned(),
                (None, None) => return Err(fail(KeyProblem::NoSecret)),
            };
            if secret.len() < 16 {
                return Err(fail(KeyProblem::ShortSecret));
            }
            DecodingKey::from_secret(secret.as_bytes())
        } else {
            let pem = match (&k.public_key_pem, &k.public_key_file) {
                (Some(p), _) => p.clone().into_bytes(),
                (None, Some(f)) => std::fs::read(f).map_err(|e| unreadable(f, e))?,
                (None, None) => return Err(fail(KeyProblem::NoPublicKey)),
            };
            public_key(alg, &pem).map_err(fail)?
        };
        let account = k.account.clone();
        keys.push(VerifyKey { kid: k.kid.clone(), alg, key, account });
    }
    if let Some(path) = &auth.jwks_file {
        keys.extend(load_jwks(path)?);
    }
    if keys.is_empty() && auth.jwks_url.is_none() {
        return Err(KeyError { at: "no token verification key".into(), problem: KeyProblem::NoKeys });
    }
    Ok(keys)
}

fn public_key(alg: Algorithm, pem: &[u8]) -> Result<DecodingKey, KeyProblem> {
    let parsed = match alg {
        Algorithm::RS256 => DecodingKey::from_rsa_pem(pem),
        Algorithm::ES256 => DecodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
        other => return Err(KeyProblem::Algorithm { given: format!("{other:?}"), allowed: PUBLIC_ALGORITHMS }),
    };
    parsed.map_err(|source| KeyProblem::BadKey { alg, source })
}

/// A public verification key bound to `account` (from the control plane): RS256, ES256 or
/// EdDSA only, so that no shared secret is ever replicated.
pub fn account_public_key(account: AccountId, kid: &str, algorithm_name: &str, pem: &str) -> Result<VerifyKey, KeyError> {
    let fail = |problem| KeyError { at: format!("account {account} key {kid:?}"), problem };
    if kid.is_empty() {
        return Err(fail(KeyProblem::NoKid));
    }
    let alg = algorithm(algorithm_name)
        .filter(|a| *a != Algorithm::HS256)
        .ok_or_else(|| fail(KeyProblem::Algorithm { given: algorithm_name.to_owned(), allowed: PUBLIC_ALGORITHMS }))?;
    let key = public_key(alg, pem.as_bytes()).map_err(fail)?;
    Ok(VerifyKey { kid: Some(kid.to_owned()), alg, key, account: Some(account) })
}

/// Loads a JWKS document from a file. Keys without `kid` or without a usable algorithm are refused.
pub fn load_jwks(path: &Path) -> Result<Vec<VerifyKey>, KeyError> {
    let fail = |problem| KeyError { at: "auth.jwks_file".into(), problem };
    let text = std::fs::read_to_string(path).map_err(|source| fail(KeyProblem::Unreadable { path: path.to_owned(), source }))?;
    let set: JwkSet = serde_json::from_str(&text).map_err(|e| fail(KeyProblem::NotJwks(e)))?;
    jwks_keys(&set).map_err(fail)
}

/// Fetches a JWKS document over HTTP or HTTPS (public CA roots) and loads its keys.
pub async fn fetch_jwks(url: &str) -> Result<Vec<VerifyKey>, KeyError> {
    use http_body_util::{BodyExt, Empty, Limited};
    use hyper_util::rt::TokioIo;
    let fail = |problem| KeyError { at: format!("auth.jwks_url {url}"), problem };
    let uri: http::Uri = url.parse().map_err(|e: http::uri::InvalidUri| fail(KeyProblem::Fetch(e.to_string())))?;
    let host = uri.host().ok_or_else(|| fail(KeyProblem::Fetch("no host".into())))?.to_owned();
    let tls = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
    let fetch = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
        let req = http::Request::get(path).header(http::header::HOST, host.as_str()).body(Empty::<bytes::Bytes>::new()).map_err(|e| e.to_string())?;
        let resp = if tls {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
            let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
            let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await.map_err(|e| e.to_string())?;
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            send.send_request(req).await.map_err(|e| e.to_string())?
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            send.send_request(req).await.map_err(|e| e.to_string())?
        };
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), 1 << 20).collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok::<_, String>(body)
    };
    let body = tokio::time::timeout(std::time::Duration::from_secs(10), fetch)
        .await
        .map_err(|_| fail(KeyProblem::Fetch("timed out".into())))?
        .map_err(|e| fail(KeyProblem::Fetch(e)))?;
    let set: JwkSet = serde_json::from_slice(&body).map_err(|e| fail(KeyProblem::NotJwks(e)))?;
    jwks_keys(&set).map_err(fail)
}

fn jwks_keys(set: &JwkSet) -> Result<Vec<VerifyKey>, KeyProblem> {
    set.keys
        .iter()
        .map(|jwk| {
            let kid = jwk.common.key_id.clone().ok_or(KeyProblem::NoKid)?;
            let given = jwk.common.key_algorithm.map(|a| format!("{a:?}")).unwrap_or_else(|| "none".into());
            let alg = algorithm(&given).ok_or_else(|| KeyProblem::Algorithm { given: format!("{given} (key {kid})"), allowed: PUBLIC_ALGORITHMS })?;
            if alg == Algorithm::HS256 {
                return Err(KeyProblem::SymmetricJwk { kid });
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|source| KeyProblem::BadKey { alg, source })?;
            Ok(VerifyKey { kid: Some(kid), alg, key, account: None })
        })
        .collect()
}
