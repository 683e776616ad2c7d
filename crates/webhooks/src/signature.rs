//! The `Herald-Signature` header: `t=<unix seconds>,v1=<hex>[,v1=<hex>…]`, each `v1` the
//! HMAC-SHA256 of `"<t>.<body>"` under one active secret, lowercase hex. A receiver accepts a
//! request when one `v1` matches its secret and `t` is recent (docs/backends.md, "Verifying a
//! request"), so a secret rotates without a moment where requests fail: list the new secret
//! next to the old one, move the receiver to the new one, remove the old.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header's name.
pub const HEADER: &str = "Herald-Signature";

/// How far `t` may be from the receiver's clock by default, seconds (replays older than this
/// are refused).
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

fn mac(secret: &[u8], t: u64, body: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
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

/// The header value for `body` sent at `t` (Unix seconds), one `v1` per secret, in order.
pub fn sign(secrets: &[Vec<u8>], t: u64, body: &[u8]) -> String {
    let mut out = format!("t={t}");
    for s in secrets {
        out.push_str(",v1=");
        out.push_str(&hex(&mac(s, t, body).finalize().into_bytes()));
    }
    out
}

/// Why a request's signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=…,v1=…`.
    #[error("malformed Herald-Signature header")]
    Malformed,
    /// `t` is further than the tolerance from now (a replay, or a clock far off).
    #[error("timestamp outside the tolerance")]
    Stale,
    /// No `v1` matches the secret.
    #[error("no signature matches the secret")]
    Mismatch,
}

/// Checks `header` for `body` with `secret`, at `now` (Unix seconds), accepting a `t` within
/// `tolerance_secs` of it. The comparison takes the same time whatever the bytes.
pub fn verify(header: &str, body: &[u8], secret: &[u8], now: u64, tolerance_secs: u64) -> Result<(), SignatureError> {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<u64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", v)) => sigs.push(unhex(v).ok_or(SignatureError::Malformed)?),
            // Other schemes a later version may add are ignored.
            Some(_) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if sigs.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(t) > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    // `verify_slice` compares in constant time.
    if sigs.iter().any(|s| mac(secret, t, body).verify_slice(s).is_ok()) { Ok(()) } else { Err(SignatureError::Mismatch) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"events":[]}"#;

    #[test]
    fn the_secret_verifies_and_a_wrong_one_fails() {
        let secret = b"whsec-0123456789abcdef".to_vec();
        let header = sign(std::slice::from_ref(&secret), 1_700_000_000, BODY);
        assert_eq!(verify(&header, BODY, &secret, 1_700_000_010, 300), Ok(()));
        assert_eq!(verify(&header, BODY, b"whsec-another-secret-000", 1_700_000_010, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify(&header, br#"{"events":[1]}"#, &secret, 1_700_000_010, 300), Err(SignatureError::Mismatch), "another body");
        assert_eq!(verify(&header, BODY, &secret, 1_700_000_400, 300), Err(SignatureError::Stale), "a replay after the tolerance");
        assert_eq!(verify("v1=00", BODY, &secret, 0, 300), Err(SignatureError::Malformed));
        assert_eq!(verify("t=5,v1=zz", BODY, &secret, 5, 300), Err(SignatureError::Malformed));
    }

    #[test]
    fn during_a_rotation_either_secret_verifies() {
        let (old, new) = (b"old-secret-0123456789".to_vec(), b"new-secret-0123456789".to_vec());
        let header = sign(&[old.clone(), new.clone()], 1_700_000_000, BODY);
        assert_eq!(header.matches("v1=").count(), 2);
        assert_eq!(verify(&header, BODY, &old, 1_700_000_000, 300), Ok(()));
        assert_eq!(verify(&header, BODY, &new, 1_700_000_000, 300), Ok(()));
        assert_eq!(verify(&header, BODY, b"neither-secret-0123456", 1_700_000_000, 300), Err(SignatureError::Mismatch));
    }
}
