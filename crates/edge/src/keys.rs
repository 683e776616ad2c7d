//! Token verification keys: a set of keys active at once (rotation), each bound to one
//! algorithm, optionally to a `kid` and to one account, from config and from a JWKS file.
//!
//! A token is tried only against keys of the algorithm its header names, and the header's
//! algorithm must be one of the four accepted: `alg: none` and algorithm confusion (an HS256 token
//! "signed" with an RSA public key as the secret) cannot succeed, because an RSA, EC or Ed25519
//! key is never used as an HMAC secret.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use std::path::Path;

use herald_config::AuthConfig;
use herald_core::AccountId;

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
pub fn load(auth: &AuthConfig) -> Result<Vec<VerifyKey>, String> {
    let mut keys = Vec::new();
    if let Some(secret) = &auth.jwt_secret {
        keys.push(VerifyKey { kid: None, alg: Algorithm::HS256, key: DecodingKey::from_secret(secret.as_bytes()), account: None });
    }
    for (i, k) in auth.keys.iter().enumerate() {
        let what = || format!("auth.keys[{i}]{}", k.kid.as_deref().map(|kid| format!(" (kid {kid})")).unwrap_or_default());
        let alg = algorithm(&k.algorithm).ok_or_else(|| format!("{}: unknown algorithm {}", what(), k.algorithm))?;
        let key = if alg == Algorithm::HS256 {
            let secret = match (&k.secret, &k.secret_file) {
                (Some(s), _) => s.clone(),
                (None, Some(f)) => std::fs::read_to_string(f)
                    .map_err(|e| format!("{}: cannot read {}: {e}", what(), f.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
                (None, None) => return Err(format!("{}: no secret", what())),
            };
            if secret.len() < 16 {
                return Err(format!("{}: an HS256 secret must be at least 16 bytes", what()));
            }
            DecodingKey::from_secret(secret.as_bytes())
        } else {
            let pem = match (&k.public_key_pem, &k.public_key_file) {
                (Some(p), _) => p.clone().into_bytes(),
                (None, Some(f)) => std::fs::read(f).map_err(|e| format!("{}: cannot read {}: {e}", what(), f.display()))?,
                (None, None) => return Err(format!("{}: no public key", what())),
            };
            public_key(alg, &pem).map_err(|e| format!("{}: {e}", what()))?
        };
        let account = k.account.as_deref().map(|a| AccountId::new(a).map_err(|e| format!("{}: {e}", what()))).transpose()?;
        keys.push(VerifyKey { kid: k.kid.clone(), alg, key, account });
    }
    if let Some(path) = &auth.jwks_file {
        keys.extend(load_jwks(path)?);
    }
    if keys.is_empty() && auth.jwks_url.is_none() {
        return Err("no token verification key: set auth.jwt_secret (HERALD_JWT_SECRET), auth.keys, auth.jwks_file or auth.jwks_url".into());
    }
    Ok(keys)
}

fn public_key(alg: Algorithm, pem: &[u8]) -> Result<DecodingKey, String> {
    let parsed = match alg {
        Algorithm::RS256 => DecodingKey::from_rsa_pem(pem),
        Algorithm::ES256 => DecodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
        _ => return Err("only RS256, ES256 and EdDSA public keys can be given this way".into()),
    };
    parsed.map_err(|e| format!("not a {alg:?} public key in PEM: {e}"))
}

/// A public verification key bound to `account` (from the control plane): RS256, ES256 or
/// EdDSA only, so that no shared secret is ever replicated.
pub fn account_public_key(account: AccountId, kid: &str, algorithm_name: &str, pem: &str) -> Result<VerifyKey, String> {
    if kid.is_empty() {
        return Err("kid is required".into());
    }
    let alg = algorithm(algorithm_name).filter(|a| *a != Algorithm::HS256).ok_or_else(|| format!("algorithm must be RS256, ES256 or EdDSA, not {algorithm_name}"))?;
    Ok(VerifyKey { kid: Some(kid.to_owned()), alg, key: public_key(alg, pem.as_bytes())?, account: Some(account) })
}

/// Loads a JWKS document from a file. Keys without `kid` or without a usable algorithm are refused.
pub fn load_jwks(path: &Path) -> Result<Vec<VerifyKey>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("auth.jwks_file: cannot read {}: {e}", path.display()))?;
    let set: JwkSet = serde_json::from_str(&text).map_err(|e| format!("auth.jwks_file: not a JWKS document: {e}"))?;
    jwks_keys(&set, "auth.jwks_file")
}

/// Fetches a JWKS document over HTTP or HTTPS (public CA roots) and loads its keys.
pub async fn fetch_jwks(url: &str) -> Result<Vec<VerifyKey>, String> {
    use http_body_util::{BodyExt, Empty, Limited};
    use hyper_util::rt::TokioIo;
    let uri: http::Uri = url.parse().map_err(|e| format!("auth.jwks_url: {e}"))?;
    let host = uri.host().ok_or("auth.jwks_url: no host")?.to_owned();
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
        .map_err(|_| format!("auth.jwks_url {url}: timed out"))?
        .map_err(|e| format!("auth.jwks_url {url}: {e}"))?;
    let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("auth.jwks_url {url}: not a JWKS document: {e}"))?;
    jwks_keys(&set, "auth.jwks_url")
}

fn jwks_keys(set: &JwkSet, what: &str) -> Result<Vec<VerifyKey>, String> {
    set.keys
        .iter()
        .map(|jwk| {
            let kid = jwk.common.key_id.clone().ok_or_else(|| format!("{what}: every key needs a kid"))?;
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| algorithm(&format!("{a:?}")))
                .ok_or_else(|| format!("{what}: key {kid}: alg must be RS256, ES256 or EdDSA"))?;
            if alg == Algorithm::HS256 {
                return Err(format!("{what}: key {kid}: symmetric keys do not belong in a JWKS"));
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("{what}: key {kid}: {e}"))?;
            Ok(VerifyKey { kid: Some(kid), alg, key, account: None })
        })
        .collect()
}
