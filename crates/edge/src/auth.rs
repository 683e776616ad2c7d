//! Client tokens (HS256 JWTs) and publish API keys.
//!
//! A token names its account and the channel patterns it may subscribe to and publish on. The
//! verifier maps every failure to one of two protocol codes: `token_expired` when only `exp` is
//! wrong, `unauthorized` for everything else. Keys are compared in constant time.

use herald_core::{AccountId, ChannelName, ChannelPattern};
use herald_protocol::ErrorCode;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use crate::keys::{self, VerifyKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The claims Herald reads from a client token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenClaims {
    /// The user.
    pub sub: String,
    /// The account the connection belongs to.
    pub account: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not valid before (seconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Token id. A publish-capable token with a `jti` opens one WebSocket session only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Channel patterns the client may subscribe to (and query presence of).
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Channel patterns the client may publish on.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Channel patterns whose presence (members, join/leave) the client may see. Absent: the
    /// same as `subscribe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<Vec<String>>,
}

/// A verified token: who, which account, what they may do, until when.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The token's `sub`.
    pub user: String,
    /// The account.
    pub account: AccountId,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
    /// The token's `jti`, if any.
    pub jti: Option<String>,
    /// The token's `iat` (seconds since the Unix epoch), if any.
    pub issued_at: Option<u64>,
    subscribe: Vec<ChannelPattern>,
    publish: Vec<ChannelPattern>,
    presence: Option<Vec<ChannelPattern>>,
    /// What the authorization proxy said about the user on connect (its answer's `info`),
    /// shown with the connection's presence.
    pub info: Option<herald_core::UserInfo>,
}

impl Grant {
    /// What orders (revocations, disconnects) look at.
    pub fn facts(&self) -> herald_core::TokenFacts<'_> {
        herald_core::TokenFacts { account: &self.account, user: &self.user, jti: self.jti.as_deref(), issued_at: self.issued_at }
    }

    /// Whether the token allows subscribing to (and presence on) `channel`: its user's own
    /// personal channel always, another channel when a subscribe pattern matches.
    pub fn may_subscribe(&self, channel: &ChannelName) -> bool {
        herald_core::may_read(&self.user, &self.subscribe, channel)
    }

    /// Whether the token allows seeing presence (members, join/leave) of `channel`.
    pub fn may_see_presence(&self, channel: &ChannelName) -> bool {
        match &self.presence {
            Some(ps) => herald_core::may_read(&self.user, ps, channel),
            None => self.may_subscribe(channel),
        }
    }

    /// The channel patterns the token may subscribe to.
    pub fn subscribe_patterns(&self) -> &[ChannelPattern] {
        &self.subscribe
    }

    /// Replaces the token's rights with those the authorization proxy gave the connection (each
    /// list it did not give stays the token's).
    pub fn apply_rights(&mut self, r: crate::proxy::Rights) {
        if let Some(s) = r.subscribe {
            self.subscribe = s;
        }
        if let Some(p) = r.publish {
            self.publish = p;
        }
        if let Some(p) = r.presence {
            self.presence = Some(p);
        }
    }

    /// Whether the token may publish anywhere at all.
    pub fn may_publish_anything(&self) -> bool {
        !self.publish.is_empty()
    }

    /// Whether the token allows publishing on `channel`. Personal channels are written by
    /// backends only (a client token never publishes to one, its own included).
    pub fn may_publish(&self, channel: &ChannelName) -> bool {
        !channel.is_personal() && self.publish.iter().any(|p| p.matches(channel))
    }
}

/// A refused token or key: the protocol code and a message safe to show the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AuthError {
    /// `unauthorized` or `token_expired`.
    pub code: ErrorCode,
    /// Why.
    pub message: String,
}

fn unauthorized(message: impl Into<String>) -> AuthError {
    AuthError { code: ErrorCode::Unauthorized, message: message.into() }
}

/// Verifies client tokens against every active key: those from config, and those last fetched
/// from the JWKS URL.
pub struct TokenVerifier {
    keys: Vec<VerifyKey>,
    remote: parking_lot::RwLock<std::sync::Arc<Vec<VerifyKey>>>,
    /// Keys from the control plane (each bound to its account), replaced whole on every change.
    managed: parking_lot::RwLock<std::sync::Arc<Vec<VerifyKey>>>,
    /// Set when a token named a `kid` no key has: the JWKS refresher fetches early.
    unknown_kid: tokio::sync::Notify,
    leeway: u64,
}

impl TokenVerifier {
    /// A verifier with one HS256 secret (tools and tests).
    pub fn hs256(secret: &[u8], leeway_secs: u64) -> Self {
        Self::new(vec![VerifyKey { kid: None, alg: Algorithm::HS256, key: DecodingKey::from_secret(secret), account: None }], leeway_secs)
    }

    /// A verifier over `keys` (see [`crate::keys::load`]), allowing `leeway_secs` of clock skew.
    pub fn new(keys: Vec<VerifyKey>, leeway_secs: u64) -> Self {
        Self { keys, remote: Default::default(), managed: Default::default(), unknown_kid: tokio::sync::Notify::new(), leeway: leeway_secs }
    }

    /// Replaces the keys fetched from the JWKS URL.
    pub fn set_remote_keys(&self, keys: Vec<VerifyKey>) {
        *self.remote.write() = std::sync::Arc::new(keys);
    }

    /// Replaces the control plane's keys.
    pub fn set_managed_keys(&self, keys: Vec<VerifyKey>) {
        *self.managed.write() = std::sync::Arc::new(keys);
    }

    /// Waits until a token names a `kid` that no key has.
    pub async fn unknown_kid_seen(&self) {
        self.unknown_kid.notified().await;
    }

    /// Verifies `token` and returns what it grants.
    pub fn verify(&self, token: &str) -> Result<Grant, AuthError> {
        if token.len() > 8192 {
            return Err(unauthorized("token is too long"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| unauthorized("token is malformed"))?;
        if !keys::accepted(header.alg) {
            return Err(unauthorized("token algorithm is not accepted"));
        }
        let remote = self.remote.read().clone();
        let managed = self.managed.read().clone();
        let mut result = Err(unauthorized("no key matches this token's kid and algorithm"));
        let mut candidates = self.keys.iter().chain(remote.iter()).chain(managed.iter()).filter(|k| k.alg == header.alg && k.kid == header.kid).peekable();
        if candidates.peek().is_none() && header.kid.is_some() {
            self.unknown_kid.notify_one();
        }
        for k in candidates {
            let mut validation = Validation::new(k.alg);
            validation.leeway = self.leeway;
            validation.set_required_spec_claims(&["exp", "sub"]);
            validation.validate_exp = true;
            validation.validate_nbf = true;
            match jsonwebtoken::decode::<TokenClaims>(token, &k.key, &validation) {
                Ok(data) => {
                    let grant = grant(data.claims)?;
                    if k.account.as_ref().is_some_and(|a| *a != grant.account) {
                        return Err(unauthorized("this key may not sign tokens for that account"));
                    }
                    return Ok(grant);
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind;
                    result = Err(match e.kind() {
                        ErrorKind::ExpiredSignature => AuthError { code: ErrorCode::TokenExpired, message: "token has expired".into() },
                        ErrorKind::ImmatureSignature => unauthorized("token is not valid yet (nbf)"),
                        ErrorKind::InvalidSignature => unauthorized("token signature is invalid"),
                        ErrorKind::InvalidAlgorithm => unauthorized("token algorithm is not accepted"),
                        ErrorKind::MissingRequiredClaim(c) => unauthorized(format!("token lacks the {c} claim")),
                        _ => unauthorized("token is malformed"),
                    });
                }
            }
        }
        result
    }
}

fn grant(c: TokenClaims) -> Result<Grant, AuthError> {
    let account = AccountId::new(&c.account).map_err(|e| unauthorized(format!("token account: {e}")))?;
    let parse = |ps: &[String]| -> Result<Vec<ChannelPattern>, AuthError> {
        ps.iter().map(|p| ChannelPattern::parse(p).map_err(|e| unauthorized(format!("token pattern {p:?}: {e}")))).collect()
    };
    if c.jti.as_ref().is_some_and(|j| j.is_empty() || j.len() > 128) {
        return Err(unauthorized("token jti must be 1-128 characters"));
    }
    let presence = c.presence.as_deref().map(parse).transpose()?;
    Ok(Grant { user: c.sub, account, expires_at: c.exp, jti: c.jti, issued_at: c.iat, subscribe: parse(&c.subscribe)?, publish: parse(&c.publish)?, presence, info: None })
}

/// Mints HS256 tokens (`herald token`, and `herald dev`'s demo page).
pub struct TokenIssuer {
    key: EncodingKey,
}

impl TokenIssuer {
    /// An issuer signing with `secret`.
    pub fn hs256(secret: &[u8]) -> Self {
        Self { key: EncodingKey::from_secret(secret) }
    }

    /// Signs `claims`.
    pub fn issue(&self, claims: &TokenClaims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.key).expect("HS256 signing cannot fail")
    }
}

/// Who a publish API key belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOwner {
    /// The admin key: may publish to any account, naming it in the request.
    Admin,
    /// An account's key: publishes to that account only.
    Account(AccountId),
}

/// A configured key: as given, or only its SHA-256 (`sha256:<64 hex>`), which is how keys should
/// be stored. API keys are random and long (at least 128 bits), so a fast hash protects them as
/// well as a slow one would, and checking one costs microseconds, not a denial of service.
enum StoredKey {
    Plain(String),
    Sha256([u8; 32]),
}

impl StoredKey {
    fn parse(s: &str) -> Self {
        match s.strip_prefix("sha256:").and_then(parse_hex32) {
            Some(d) => Self::Sha256(d),
            None => Self::Plain(s.to_owned()),
        }
    }

    fn matches(&self, presented: &str, digest: &[u8; 32]) -> bool {
        match self {
            Self::Plain(k) => ct_eq(k.as_bytes(), presented.as_bytes()),
            Self::Sha256(d) => ct_eq(d, digest),
        }
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The stored form of an API key: `sha256:<hex>`.
pub fn hash_api_key(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(key.as_bytes());
    format!("sha256:{}", d.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The publish API keys.
#[derive(Default)]
pub struct ApiKeys {
    admin: Option<StoredKey>,
    accounts: Vec<(StoredKey, AccountId)>,
    /// Keys managed by the control plane (digests only), replaced whole on every config change.
    managed: parking_lot::RwLock<Vec<([u8; 32], AccountId)>>,
}

impl ApiKeys {
    /// Keys from config: an optional admin key and per-account keys, each plain or `sha256:…`.
    pub fn new(admin: Option<String>, accounts: &BTreeMap<AccountId, Vec<String>>) -> Self {
        let accounts = accounts.iter().flat_map(|(a, keys)| keys.iter().map(move |k| (StoredKey::parse(k), a.clone()))).collect();
        Self { admin: admin.as_deref().map(StoredKey::parse), accounts, managed: Default::default() }
    }

    /// Replaces the control plane's keys: `(hex sha256, account)` pairs. Keys that are not 64
    /// hex digits are skipped (and counted in the return value). Keys from the config file stay.
    pub fn set_managed(&self, keys: impl IntoIterator<Item = (String, AccountId)>) -> usize {
        let mut bad = 0;
        let parsed = keys
            .into_iter()
            .filter_map(|(hex, a)| match parse_hex32(&hex) {
                Some(d) => Some((d, a)),
                None => {
                    bad += 1;
                    None
                }
            })
            .collect();
        *self.managed.write() = parsed;
        bad
    }

    /// Who `key` belongs to. Every configured key is compared, in constant time each.
    pub fn owner(&self, key: &str) -> Option<KeyOwner> {
        use sha2::{Digest, Sha256};
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut found = None;
        if let Some(a) = &self.admin
            && a.matches(key, &digest) {
                found = Some(KeyOwner::Admin);
            }
        for (k, account) in &self.accounts {
            if k.matches(key, &digest) && found.is_none() {
                found = Some(KeyOwner::Account(account.clone()));
            }
        }
        for (d, account) in self.managed.read().iter() {
            if ct_eq(d, &digest) && found.is_none() {
                found = Some(KeyOwner::Account(account.clone()));
            }
        }
        found
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> TokenClaims {
        TokenClaims { sub: "u1".into(), account: "acme".into(), exp, iat: None, nbf: None, jti: None, subscribe: vec!["chat:*".into()], publish: vec!["x".into()], presence: None }
    }

    fn now() -> u64 {
        herald_core::now_ms() / 1000
    }

    #[test]
    fn valid_tokens_grant_their_patterns() {
        let t = TokenIssuer::hs256(b"0123456789abcdef0123").issue(&claims(now() + 60));
        let g = TokenVerifier::hs256(b"0123456789abcdef0123", 0).verify(&t).unwrap();
        assert_eq!(g.account.as_str(), "acme");
        assert!(g.may_subscribe(&ChannelName::new("chat:1").unwrap()));
        assert!(!g.may_subscribe(&ChannelName::new("x").unwrap()));
        assert!(g.may_publish(&ChannelName::new("x").unwrap()));
    }

    #[test]
    fn expired_and_wrongly_signed_tokens_are_refused_with_distinct_codes() {
        let v = TokenVerifier::hs256(b"0123456789abcdef0123", 0);
        let expired = TokenIssuer::hs256(b"0123456789abcdef0123").issue(&claims(now() - 120));
        assert_eq!(v.verify(&expired).unwrap_err().code, ErrorCode::TokenExpired);
        let forged = TokenIssuer::hs256(b"another-secret-0000000").issue(&claims(now() + 60));
        assert_eq!(v.verify(&forged).unwrap_err().code, ErrorCode::Unauthorized);
        assert_eq!(v.verify("garbage").unwrap_err().code, ErrorCode::Unauthorized);
        // alg=none is never accepted.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1IiwiYWNjb3VudCI6ImFjbWUiLCJleHAiOjQxMDI0NDQ4MDB9.";
        assert_eq!(v.verify(none).unwrap_err().code, ErrorCode::Unauthorized);
    }

    #[test]
    fn api_keys_identify_their_owner() {
        let mut m = BTreeMap::new();
        m.insert(AccountId::new("acme").unwrap(), vec!["acme-key-0123456789".to_string()]);
        let k = ApiKeys::new(Some("admin-key-0123456789".into()), &m);
        assert_eq!(k.owner("admin-key-0123456789"), Some(KeyOwner::Admin));
        assert_eq!(k.owner("acme-key-0123456789"), Some(KeyOwner::Account(AccountId::new("acme").unwrap())));
        assert_eq!(k.owner("acme-key-012345678"), None);
    }

    #[test]
    fn managed_keys_are_replaced_whole_and_config_keys_stay() {
        let mut m = BTreeMap::new();
        m.insert(AccountId::new("acme").unwrap(), vec!["acme-key-0123456789".to_string()]);
        let k = ApiKeys::new(None, &m);
        let digest = |key: &str| hash_api_key(key).strip_prefix("sha256:").unwrap().to_owned();
        let beta = AccountId::new("beta").unwrap();
        assert_eq!(k.set_managed([(digest("old-key-0123456789"), beta.clone()), ("not-hex".into(), beta.clone())]), 1);
        assert_eq!(k.owner("old-key-0123456789"), Some(KeyOwner::Account(beta.clone())));
        k.set_managed([(digest("new-key-0123456789"), beta.clone())]);
        assert_eq!(k.owner("old-key-0123456789"), None, "a revoked key stops working");
        assert_eq!(k.owner("new-key-0123456789"), Some(KeyOwner::Account(beta)));
        assert_eq!(k.owner("acme-key-0123456789"), Some(KeyOwner::Account(AccountId::new("acme").unwrap())));
    }

    #[test]
    fn keys_stored_as_sha256_identify_their_owner_too() {
        let mut m = BTreeMap::new();
        m.insert(AccountId::new("acme").unwrap(), vec![hash_api_key("acme-secret-key-0123456789")]);
        let k = ApiKeys::new(Some(hash_api_key("admin-secret-key-0123456789")), &m);
        assert_eq!(k.owner("admin-secret-key-0123456789"), Some(KeyOwner::Admin));
        assert_eq!(k.owner("acme-secret-key-0123456789"), Some(KeyOwner::Account(AccountId::new("acme").unwrap())));
        assert_eq!(k.owner(&hash_api_key("acme-secret-key-0123456789")), None, "the stored form is not a key");
        assert_eq!(k.owner("acme-secret-key-012345678"), None);
    }
}
