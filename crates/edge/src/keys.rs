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
            DecodingKey::from_secret(k.secret.as_deref().unwrap_or_default().as_bytes())
        } else {
            let pem = match (&k.public_key_pem, &k.public_key_file) {
                (Some(p), _) => p.clone().into_bytes(),
                (None, Some(f)) => std::fs::read(f).map_err(|e| format!("{}: cannot read {}: {e}", what(), f.display()))?,
                (None, None) => return Err(format!("{}: no public key", what())),
            };
            let parsed = match alg {
                Algorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
                Algorithm::ES256 => DecodingKey::from_ec_pem(&pem),
                _ => DecodingKey::from_ed_pem(&pem),
            };
            parsed.map_err(|e| format!("{}: not a {} public key in PEM: {e}", what(), k.algorithm))?
        };
        let account = k.account.as_deref().map(|a| AccountId::new(a).map_err(|e| format!("{}: {e}", what()))).transpose()?;
        keys.push(VerifyKey { kid: k.kid.clone(), alg, key, account });
    }
    if let Some(path) = &auth.jwks_file {
        keys.extend(load_jwks(path)?);
    }
    if keys.is_empty() {
        return Err("no token verification key: set auth.jwt_secret (HERALD_JWT_SECRET), auth.keys or auth.jwks_file".into());
    }
    Ok(keys)
}

/// Loads a JWKS document. Keys without `kid` or without a usable algorithm are refused.
pub fn load_jwks(path: &Path) -> Result<Vec<VerifyKey>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("auth.jwks_file: cannot read {}: {e}", path.display()))?;
    let set: JwkSet = serde_json::from_str(&text).map_err(|e| format!("auth.jwks_file: not a JWKS document: {e}"))?;
    set.keys
        .iter()
        .map(|jwk| {
            let kid = jwk.common.key_id.clone().ok_or("auth.jwks_file: every key needs a kid")?;
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| algorithm(&format!("{a:?}")))
                .ok_or_else(|| format!("auth.jwks_file: key {kid}: alg must be RS256, ES256 or EdDSA"))?;
            if alg == Algorithm::HS256 {
                return Err(format!("auth.jwks_file: key {kid}: symmetric keys do not belong in a JWKS"));
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("auth.jwks_file: key {kid}: {e}"))?;
            Ok(VerifyKey { kid: Some(kid), alg, key, account: None })
        })
        .collect()
}
