//! Console logins: a signed session cookie, the CSRF token bound to it, and the Origin check.
//!
//! The cookie is `herald_console=<expiry>.<nonce>.<mac>`, where the MAC is HMAC-SHA256 under a key
//! drawn at random when the process starts (so a restart logs everyone out, and no key is
//! configured or stored). It is `HttpOnly`, `SameSite=Strict`, `Path=/console`, and `Secure` when
//! the listener serves TLS. Every state-changing call also sends the session's CSRF token
//! (`X-CSRF-Token`, a second MAC of the nonce, handed out by the login and by
//! `GET /console/api/session`), and its `Origin`, when sent, must be this host.

use hmac::{Hmac, Mac};
use http::{HeaderMap, header};
use parking_lot::Mutex;
use sha2::Sha256;
use std::collections::HashMap;

use herald_core::now_ms;

/// The session cookie's name.
pub const COOKIE: &str = "herald_console";
/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Failed logins allowed per minute (the whole process), so the admin key cannot be guessed
/// online.
const FAILED_LOGINS_PER_MINUTE: u32 = 10;

/// Signs and checks sessions.
pub struct Sessions {
    key: [u8; 32],
    ttl_ms: u64,
    /// Logged-out nonces, until their expiry.
    revoked: Mutex<HashMap<String, u64>>,
    /// Failed logins in the current minute: (minute, count).
    failures: Mutex<(u64, u32)>,
}

/// A valid session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Its nonce (what the CSRF token is bound to).
    pub nonce: String,
    /// When it expires, ms since the epoch.
    pub expires_ms: u64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

impl Sessions {
    /// Sessions lasting `ttl_secs`, under a fresh random key.
    pub fn new(ttl_secs: u64) -> Self {
        Self { key: rand::random(), ttl_ms: ttl_secs * 1000, revoked: Mutex::new(HashMap::new()), failures: Mutex::new((0, 0)) }
    }

    fn mac(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key length");
        for p in parts {
            m.update(p);
            m.update(b"\0");
        }
        m
    }

    /// A new session: the cookie value and its CSRF token.
    pub fn issue(&self) -> (String, String) {
        let expires = now_ms() + self.ttl_ms;
        let nonce = hex(&rand::random::<[u8; 16]>());
        let sig = hex(&self.mac(&[b"session", expires.to_string().as_bytes(), nonce.as_bytes()]).finalize().into_bytes());
        let csrf = self.csrf_token(&nonce);
        (format!("{expires}.{nonce}.{sig}"), csrf)
    }

    /// The CSRF token of a session.
    pub fn csrf_token(&self, nonce: &str) -> String {
        hex(&self.mac(&[b"csrf", nonce.as_bytes()]).finalize().into_bytes())
    }

    /// The session a cookie value stands for, if its MAC checks out and it has not expired or
    /// been logged out.
    pub fn verify(&self, value: &str) -> Option<Session> {
        let mut it = value.split('.');
        let (expires, nonce, sig) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() {
            return None;
        }
        let expires_ms: u64 = expires.parse().ok()?;
        self.mac(&[b"session", expires.as_bytes(), nonce.as_bytes()]).verify_slice(&unhex(sig)?).ok()?;
        let now = now_ms();
        if expires_ms <= now || self.revoked.lock().contains_key(nonce) {
            return None;
        }
        Some(Session { nonce: nonce.to_owned(), expires_ms })
    }

    /// Whether `token` is `session`'s CSRF token (compared in constant time).
    pub fn csrf_ok(&self, session: &Session, token: &str) -> bool {
        unhex(token).is_some_and(|t| self.mac(&[b"csrf", session.nonce.as_bytes()]).verify_slice(&t).is_ok())
    }

    /// Ends a session before its expiry.
    pub fn revoke(&self, session: &Session) {
        let now = now_ms();
        let mut r = self.revoked.lock();
        r.retain(|_, exp| *exp > now);
        r.insert(session.nonce.clone(), session.expires_ms);
    }

    /// Counts a failed login; false when this minute's allowance is used up (then even a right
    /// key is refused until the next minute).
    pub fn login_allowed(&self) -> bool {
        let minute = now_ms() / 60_000;
        let f = self.failures.lock();
        f.0 != minute || f.1 < FAILED_LOGINS_PER_MINUTE
    }

    /// Records a failed login.
    pub fn login_failed(&self) {
        let minute = now_ms() / 60_000;
        let mut f = self.failures.lock();
        if f.0 != minute {
            *f = (minute, 0);
        }
        f.1 += 1;
    }

    /// The `Set-Cookie` value for a session cookie (`value` empty: one that deletes it).
    pub fn set_cookie(&self, value: &str, secure: bool) -> String {
        let age = if value.is_empty() { 0 } else { self.ttl_ms / 1000 };
        let secure = if secure { "; Secure" } else { "" };
        format!("{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={age}{secure}")
    }
}

/// The session cookie's value in a request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// Whether a state-changing request's `Origin` (when it sends one) is this host. Browsers send
/// it on every cross-site POST; a tool that sends none still needs the cookie and the CSRF token.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let (Ok(origin), Some(host)) = (origin.to_str(), headers.get(header::HOST).and_then(|h| h.to_str().ok())) else { return false };
    origin.split_once("://").is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && rest == host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn a_session_verifies_until_tampered_with_or_logged_out() {
        let s = Sessions::new(60);
        let (cookie, csrf) = s.issue();
        let session = s.verify(&cookie).expect("fresh session");
        assert!(s.csrf_ok(&session, &csrf));
        assert!(!s.csrf_ok(&session, &"0".repeat(64)), "a forged CSRF token is refused");
        assert!(!s.csrf_ok(&session, "not hex"));
        let (exp, rest) = cookie.split_once('.').unwrap();
        let later = format!("{}.{rest}", exp.parse::<u64>().unwrap() + 1_000_000);
        assert_eq!(s.verify(&later), None, "an extended expiry breaks the MAC");
        assert_eq!(Sessions::new(60).verify(&cookie), None, "another process's key does not verify it");
        let (_, other_csrf) = s.issue();
        assert!(!s.csrf_ok(&session, &other_csrf), "a CSRF token belongs to one session");
        s.revoke(&session);
        assert_eq!(s.verify(&cookie), None, "logged out");
    }

    #[test]
    fn failed_logins_are_capped_per_minute() {
        let s = Sessions::new(60);
        for _ in 0..FAILED_LOGINS_PER_MINUTE {
            assert!(s.login_allowed());
            s.login_failed();
        }
        assert!(!s.login_allowed());
    }

    #[test]
    fn the_cookie_is_found_among_others_and_origins_must_be_this_host() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; herald_console=x.y.z; b=2"));
        assert_eq!(cookie(&h), Some("x.y.z"));
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9091"));
        assert!(same_origin(&h), "no Origin: not a cross-site browser request");
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:9091"));
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
    }

    #[test]
    fn set_cookie_is_http_only_strict_and_secure_with_tls() {
        let s = Sessions::new(60);
        let c = s.set_cookie("v", true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure") && c.contains("Path=/console"));
        assert!(!s.set_cookie("v", false).contains("Secure"));
    }
}
