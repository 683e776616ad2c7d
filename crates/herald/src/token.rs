//! `herald token` (a signed client token for scripts and tests) and `herald api-key` (a new
//! publish API key and the form to store).

use std::process::ExitCode;

use herald_core::{AccountId, ChannelPattern};
use herald_edge::{TokenClaims, TokenIssuer};

use crate::TokenArgs;
use crate::common::usage_error;

/// Parses `90s`, `30m`, `1h`, `2d`.
fn parse_ttl(s: &str) -> Option<u64> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    Some(n * match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    })
}

fn patterns(list: &str) -> Result<Vec<String>, String> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|p| ChannelPattern::parse(p).map(|_| p.to_owned()).map_err(|e| format!("pattern {p:?}: {e}"))).collect()
}

/// `herald api-key`: 256 random bits, and the form to put in the config.
pub fn api_key() -> ExitCode {
    let key = format!("hk_{:016x}{:016x}{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>(), rand::random::<u64>(), rand::random::<u64>());
    println!("key:    {key}");
    println!("stored: {}", herald_edge::auth::hash_api_key(&key));
    ExitCode::SUCCESS
}

/// `herald token`.
pub fn token(a: TokenArgs) -> ExitCode {
    if AccountId::new(&a.account).is_err() {
        return usage_error("--account must be 1-64 characters of a-z 0-9 _ -");
    }
    let Some(ttl) = parse_ttl(&a.ttl) else { return usage_error("--ttl must look like 90s, 30m, 1h or 2d") };
    let (subscribe, publish) = match (patterns(&a.channels), patterns(&a.publish)) {
        (Ok(s), Ok(p)) => (s, p),
        (Err(e), _) | (_, Err(e)) => return usage_error(e),
    };
    let now = herald_core::now_ms() / 1000;
    let claims = TokenClaims { sub: a.sub, account: a.account, exp: now + ttl, iat: Some(now), nbf: None, jti: None, subscribe, publish, presence: None };
    println!("{}", TokenIssuer::hs256(a.secret.as_bytes()).issue(&claims));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse_with_units() {
        assert_eq!(parse_ttl("90s"), Some(90));
        assert_eq!(parse_ttl("1h"), Some(3600));
        assert_eq!(parse_ttl("2d"), Some(172800));
        assert_eq!(parse_ttl("5"), None);
        assert_eq!(parse_ttl("h"), None);
        assert_eq!(parse_ttl("5y"), None);
    }
}
