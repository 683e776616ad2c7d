//! A backend's orders on this node: the revocations standing in the region (kept in memory, so
//! that every token check is a map lookup), and the pump that applies each order issued in the
//! region to this node's live sessions.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use herald_core::{AccountId, Order, RevokeTarget, Revocation, TokenFacts, now_ms};
use herald_protocol::DisconnectCode;

use crate::state::Edge;

/// One account's standing revocations, by `jti` and by user.
#[derive(Default)]
struct AccountRevocations {
    jti: HashMap<String, Vec<Revocation>>,
    user: HashMap<String, Vec<Revocation>>,
}

/// The revocations standing in the region, as this node last heard.
#[derive(Default)]
pub struct Standing(RwLock<HashMap<AccountId, AccountRevocations>>);

impl Standing {
    /// Adds one (ended ones of the same token or user go).
    pub fn add(&self, r: Revocation) {
        let now = now_ms();
        let mut all = self.0.write();
        let account = all.entry(r.account.clone()).or_default();
        let list = match &r.target {
            RevokeTarget::Jti(j) => account.jti.entry(j.clone()).or_default(),
            RevokeTarget::User(u) => account.user.entry(u.clone()).or_default(),
        };
        list.retain(|s| s.until_ms > now && *s != r);
        list.push(r);
    }

    /// Drops every revocation whose `until` has passed.
    pub fn prune(&self) {
        let now = now_ms();
        let mut all = self.0.write();
        for a in all.values_mut() {
            for map in [&mut a.jti, &mut a.user] {
                map.retain(|_, list| {
                    list.retain(|r| r.until_ms > now);
                    !list.is_empty()
                });
            }
        }
        all.retain(|_, a| !a.jti.is_empty() || !a.user.is_empty());
    }

    /// The reason of a revocation that refuses `token` now, if one does.
    pub fn refusal(&self, token: TokenFacts<'_>) -> Option<String> {
        let all = self.0.read();
        let a = all.get(token.account)?;
        let now = now_ms();
        let by_jti = token.jti.and_then(|j| a.jti.get(j)).into_iter().flatten();
        let by_user = a.user.get(token.user).into_iter().flatten();
        by_jti.chain(by_user).find(|r| r.refuses(token, now)).map(|r| r.reason.clone())
    }

    /// Whether a revocation refuses `token` now.
    pub fn refuses(&self, token: TokenFacts<'_>) -> bool {
        self.refusal(token).is_some()
    }
}

/// Subscribes to the region's orders and loads the standing revocations (waiting at most a few
/// seconds for storage: a node that cannot reach it serves, and the adapter sends them when it
/// reconnects), then applies every order until `stop`.
pub async fn start(edge: &Arc<Edge>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let rx = edge.orders.watch();
    match tokio::time::timeout(Duration::from_secs(3), edge.orders.revocations()).await {
        Ok(Ok(list)) => list.into_iter().for_each(|r| edge.standing.add(r)),
        Ok(Err(e)) => tracing::warn!(error = %e, "orders: cannot read the standing revocations yet"),
        Err(_) => tracing::warn!("orders: reading the standing revocations timed out"),
    }
    tokio::spawn(pump(edge.clone(), rx, stop))
}

async fn pump(edge: Arc<Edge>, mut rx: tokio::sync::broadcast::Receiver<Order>, stop: CancellationToken) {
    let mut prune = tokio::time::interval(Duration::from_secs(60));
    loop {
        let order = tokio::select! {
            _ = stop.cancelled() => return,
            _ = prune.tick() => {
                edge.standing.prune();
                continue;
            }
            o = rx.recv() => o,
        };
        match order {
            Ok(o) => apply(&edge, o),
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "orders lagged; reading the standing revocations again (missed disconnects are lost)");
                match edge.orders.revocations().await {
                    Ok(list) => list.into_iter().for_each(|r| edge.standing.add(r)),
                    Err(e) => tracing::warn!(error = %e, "orders: cannot read the standing revocations"),
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Applies one order to this node: a revocation stands (refusing its tokens) and ends the
/// sessions it names; a disconnect ends the sessions it names.
pub fn apply(edge: &Edge, order: Order) {
    match order {
        Order::Disconnect(d) => {
            let n = edge.live.end(|id, token| d.ends(id, token), DisconnectCode::Disconnected, &d.reason, d.reconnect);
            edge.metrics.ordered_disconnects(DisconnectCode::Disconnected, n);
        }
        Order::Revoke(r) => {
            let now = now_ms();
            let n = edge.live.end(|_, token| r.refuses(token, now), DisconnectCode::Revoked, &r.reason, false);
            edge.metrics.ordered_disconnects(DisconnectCode::Revoked, n);
            edge.standing.add(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standing_revocations_refuse_by_jti_or_by_user_and_end() {
        let acme = AccountId::new("acme").unwrap();
        let s = Standing::default();
        let now = now_ms();
        let rev = |target, until_ms| Revocation { account: acme.clone(), target, at_ms: now, until_ms, reason: "stolen".into() };
        s.add(rev(RevokeTarget::Jti("j1".into()), now + 60_000));
        s.add(rev(RevokeTarget::User("alice".into()), now + 60_000));
        s.add(rev(RevokeTarget::User("bob".into()), now - 1));
        let facts = |user, jti, iat| TokenFacts { account: &acme, user, jti, issued_at: iat };
        assert_eq!(s.refusal(facts("carol", Some("j1"), None)).as_deref(), Some("stolen"));
        assert!(s.refuses(facts("alice", None, Some(now / 1000 - 10))));
        assert!(!s.refuses(facts("alice", None, Some(now / 1000 + 1))), "issued after");
        assert!(!s.refuses(facts("bob", None, None)), "ended");
        s.prune();
        assert!(!s.0.read()[&acme].user.contains_key("bob"));
        let other = AccountId::new("other").unwrap();
        assert!(!s.refuses(TokenFacts { account: &other, user: "alice", jti: Some("j1"), issued_at: None }));
    }
}
