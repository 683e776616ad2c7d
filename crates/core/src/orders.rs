//! Orders: what a backend tells every edge of a region to do to live sessions and tokens. A
//! [`Disconnect`] ends a user's connections (or one connection) with a reason; a [`Revocation`]
//! refuses tokens (one `jti`, or every token of a user issued before it) until a time, and ends
//! the live sessions they opened.
//!
//! Orders are region state kept beside presence (every multi-edge region has Redis for it; the
//! control plane is optional). Two adapters implement [`Orders`]: in memory (one process,
//! `herald-presence-memory`) and Redis (`herald-presence-redis`). Both pass
//! [`conformance::run_all`] (feature `testing`).

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::names::AccountId;

#[cfg(feature = "testing")]
pub mod conformance;

/// Longest accepted user (a token's `sub`), connection id or `jti`.
pub const MAX_NAME_LEN: usize = 256;
/// Longest accepted reason.
pub const MAX_REASON_LEN: usize = 256;
/// How far ahead a revocation may stand (30 days): longer than any sensible token lifetime, and
/// short enough that the standing set stays small.
pub const MAX_REVOCATION_MS: u64 = 30 * 24 * 3600 * 1000;

/// What can go wrong issuing or reading orders.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OrdersError {
    /// The order is malformed; the message names the field. Nothing was issued.
    #[error("invalid order: {0}")]
    Invalid(String),
    /// Storage cannot be reached now; the caller may retry.
    #[error("orders storage unavailable: {0}")]
    Unavailable(String),
}

/// Whose connections a [`Disconnect`] ends.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DisconnectTarget {
    /// Every connection of this user (token `sub`).
    User(String),
    /// This one connection.
    Connection(String),
}

/// End live connections, everywhere in the region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disconnect {
    /// The account.
    pub account: AccountId,
    /// Whose connections.
    pub target: DisconnectTarget,
    /// The backend's text, passed to the client as it is.
    pub reason: String,
    /// Whether the client may reconnect (after its usual backoff); `false`: it stays
    /// disconnected until the app connects again.
    pub reconnect: bool,
}

/// Which tokens a [`Revocation`] refuses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RevokeTarget {
    /// The token with this `jti`.
    Jti(String),
    /// Every token of this user (`sub`) issued before the revocation (by `iat`; a token without
    /// `iat` counts as issued before).
    User(String),
}

/// Refuse tokens until a time, and end the sessions they opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// The account.
    pub account: AccountId,
    /// Which tokens.
    pub target: RevokeTarget,
    /// When it was issued (ms since the Unix epoch): a user's tokens issued from then on work.
    pub at_ms: u64,
    /// Until when it stands (ms since the Unix epoch).
    pub until_ms: u64,
    /// The backend's text, passed to the client as it is.
    pub reason: String,
}

/// One order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Order {
    /// End connections.
    Disconnect(Disconnect),
    /// Refuse tokens.
    Revoke(Revocation),
}

/// What a token or session is, as far as orders are concerned.
#[derive(Clone, Copy, Debug)]
pub struct TokenFacts<'a> {
    /// The account.
    pub account: &'a AccountId,
    /// The token's `sub`.
    pub user: &'a str,
    /// The token's `jti`.
    pub jti: Option<&'a str>,
    /// The token's `iat` (seconds since the Unix epoch).
    pub issued_at: Option<u64>,
}

fn check_name(what: &str, s: &str) -> Result<(), OrdersError> {
    if s.is_empty() || s.len() > MAX_NAME_LEN || s.chars().any(char::is_control) {
        return Err(OrdersError::Invalid(format!("{what} must be 1-{MAX_NAME_LEN} characters without control characters")));
    }
    Ok(())
}

fn check_reason(s: &str) -> Result<(), OrdersError> {
    if s.len() > MAX_REASON_LEN || s.chars().any(char::is_control) {
        return Err(OrdersError::Invalid(format!("reason must be at most {MAX_REASON_LEN} characters without control characters")));
    }
    Ok(())
}

impl Disconnect {
    /// Whether it ends a connection `connection_id` of `token`.
    pub fn ends(&self, connection_id: &str, token: TokenFacts<'_>) -> bool {
        *token.account == self.account
            && match &self.target {
                DisconnectTarget::User(u) => u == token.user,
                DisconnectTarget::Connection(c) => c == connection_id,
            }
    }
}

impl Revocation {
    /// Whether it refuses `token` at `now_ms`.
    pub fn refuses(&self, token: TokenFacts<'_>, now_ms: u64) -> bool {
        *token.account == self.account
            && now_ms < self.until_ms
            && match &self.target {
                RevokeTarget::Jti(j) => token.jti == Some(j.as_str()),
                RevokeTarget::User(u) => u == token.user && token.issued_at.is_none_or(|iat| iat.saturating_mul(1000) < self.at_ms),
            }
    }
}

impl Order {
    /// Checks every field; `now_ms` bounds a revocation's `until` (after now, at most
    /// [`MAX_REVOCATION_MS`] ahead). The error names the field.
    pub fn validate(&self, now_ms: u64) -> Result<(), OrdersError> {
        match self {
            Self::Disconnect(d) => {
                match &d.target {
                    DisconnectTarget::User(u) => check_name("user", u)?,
                    DisconnectTarget::Connection(c) => check_name("connection_id", c)?,
                }
                check_reason(&d.reason)
            }
            Self::Revoke(r) => {
                match &r.target {
                    RevokeTarget::Jti(j) => check_name("jti", j)?,
                    RevokeTarget::User(u) => check_name("user", u)?,
                }
                if r.until_ms <= now_ms {
                    return Err(OrdersError::Invalid("until must be in the future".into()));
                }
                if r.until_ms > now_ms + MAX_REVOCATION_MS {
                    return Err(OrdersError::Invalid(format!("until must be at most {} days ahead", MAX_REVOCATION_MS / 86_400_000)));
                }
                check_reason(&r.reason)
            }
        }
    }

    /// The account it concerns.
    pub fn account(&self) -> &AccountId {
        match self {
            Self::Disconnect(d) => &d.account,
            Self::Revoke(r) => &r.account,
        }
    }
}

/// Where a region's orders live.
#[async_trait]
pub trait Orders: Send + Sync + 'static {
    /// Validates `order` and hands it to every watcher in the region (this process's too), once;
    /// a revocation also joins the standing ones until its `until`. Returns the order's id.
    async fn issue(&self, order: Order) -> Result<String, OrdersError>;

    /// Every order issued in the region from now on. An adapter that lost its storage for a
    /// while catches up on what was issued meanwhile, and after every (re)connection sends the
    /// revocations still standing again (they may repeat). A receiver that falls behind gets
    /// `RecvError::Lagged` and should read [`Orders::revocations`] again. Call
    /// [`Orders::revocations`] once after subscribing for those issued before.
    fn watch(&self) -> broadcast::Receiver<Order>;

    /// The revocations standing now (`until` not passed).
    async fn revocations(&self) -> Result<Vec<Revocation>, OrdersError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> AccountId {
        AccountId::new("acme").unwrap()
    }

    fn revocation(target: RevokeTarget) -> Revocation {
        Revocation { account: acme(), target, at_ms: 10_000, until_ms: 20_000, reason: "logout".into() }
    }

    fn token<'a>(account: &'a AccountId, user: &'a str, jti: Option<&'a str>, iat: Option<u64>) -> TokenFacts<'a> {
        TokenFacts { account, user, jti, issued_at: iat }
    }

    #[test]
    fn a_user_revocation_refuses_tokens_issued_before_it_until_its_end() {
        let r = revocation(RevokeTarget::User("alice".into()));
        let a = acme();
        assert!(r.refuses(token(&a, "alice", None, Some(9)), 15_000));
        assert!(r.refuses(token(&a, "alice", None, None), 15_000), "no iat: any token");
        assert!(!r.refuses(token(&a, "alice", None, Some(10)), 15_000), "issued at the revocation's time");
        assert!(!r.refuses(token(&a, "bob", None, Some(9)), 15_000));
        assert!(!r.refuses(token(&a, "alice", None, Some(9)), 20_000), "over");
        let other = AccountId::new("other").unwrap();
        assert!(!r.refuses(token(&other, "alice", None, Some(9)), 15_000));
    }

    #[test]
    fn a_jti_revocation_refuses_that_token_only() {
        let r = revocation(RevokeTarget::Jti("t-1".into()));
        let a = acme();
        assert!(r.refuses(token(&a, "anyone", Some("t-1"), Some(99)), 15_000));
        assert!(!r.refuses(token(&a, "anyone", Some("t-2"), Some(1)), 15_000));
        assert!(!r.refuses(token(&a, "anyone", None, Some(1)), 15_000));
    }

    #[test]
    fn orders_are_validated_field_by_field() {
        let d = |target| Order::Disconnect(Disconnect { account: acme(), target, reason: "x".into(), reconnect: false });
        assert!(d(DisconnectTarget::User("alice".into())).validate(0).is_ok());
        assert!(d(DisconnectTarget::User(String::new())).validate(0).unwrap_err().to_string().contains("user"));
        assert!(d(DisconnectTarget::Connection("a\nb".into())).validate(0).unwrap_err().to_string().contains("connection_id"));
        let mut r = revocation(RevokeTarget::Jti("j".into()));
        assert!(Order::Revoke(r.clone()).validate(15_000).is_ok());
        assert!(Order::Revoke(r.clone()).validate(20_000).unwrap_err().to_string().contains("until"));
        r.until_ms = MAX_REVOCATION_MS + 20_000;
        assert!(Order::Revoke(r.clone()).validate(15_000).unwrap_err().to_string().contains("days"));
        r.until_ms = 20_000;
        r.reason = "x".repeat(MAX_REASON_LEN + 1);
        assert!(Order::Revoke(r).validate(15_000).unwrap_err().to_string().contains("reason"));
    }
}
