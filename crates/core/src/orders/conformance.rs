//! The behaviour every [`Orders`] adapter must show. Call [`run_all`] with two handles on one
//! fresh region (two edges' adapters on one store; for a one-process adapter, the same one
//! twice); each check uses its own accounts.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

use super::{Disconnect, DisconnectTarget, Order, Orders, OrdersError, RevokeTarget, Revocation};
use crate::names::AccountId;
use crate::record::now_ms;

const PATIENCE: Duration = Duration::from_secs(20);

fn account(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

/// A disconnect of `user` in `acct`.
pub fn disconnect(acct: &str, user: &str, reconnect: bool) -> Order {
    Order::Disconnect(Disconnect { account: account(acct), target: DisconnectTarget::User(user.into()), reason: "policy".into(), reconnect })
}

/// A revocation in `acct` standing for `for_ms` from now.
pub fn revocation(acct: &str, target: RevokeTarget, for_ms: u64) -> Revocation {
    let now = now_ms();
    Revocation { account: account(acct), target, at_ms: now, until_ms: now + for_ms, reason: "logout".into() }
}

/// The next order of `acct` on `rx`, skipping other accounts' (and repeats of standing
/// revocations an adapter may send after reconnecting).
pub async fn next_order(rx: &mut broadcast::Receiver<Order>, acct: &str) -> Order {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match rx.recv().await {
                Ok(o) if o.account().as_str() == acct => return o,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => panic!("order stream closed"),
            }
        }
    })
    .await
    .expect("an order arrives")
}

/// Runs every check.
pub async fn run_all(a: Arc<dyn Orders>, b: Arc<dyn Orders>) {
    an_order_reaches_every_watcher_of_the_region_once(a.clone(), b.clone()).await;
    revocations_stand_everywhere_until_their_end(a.clone(), b.clone()).await;
    an_invalid_order_is_refused_and_reaches_nobody(a.clone(), b.clone()).await;
}

/// An order issued through one handle reaches watchers on both, once each, in issue order, with
/// distinct ids.
pub async fn an_order_reaches_every_watcher_of_the_region_once(a: Arc<dyn Orders>, b: Arc<dyn Orders>) {
    let (mut on_a, mut on_b) = (a.watch(), b.watch());
    let first = disconnect("oconf-a", "alice", false);
    let second = disconnect("oconf-a", "bob", true);
    let id1 = a.issue(first.clone()).await.unwrap();
    let id2 = b.issue(second.clone()).await.unwrap();
    assert_ne!(id1, id2);
    for rx in [&mut on_a, &mut on_b] {
        assert_eq!(next_order(rx, "oconf-a").await, first);
        assert_eq!(next_order(rx, "oconf-a").await, second);
    }
    // Nothing more for this account: a third order is the next one seen.
    let third = disconnect("oconf-a", "carol", false);
    a.issue(third.clone()).await.unwrap();
    assert_eq!(next_order(&mut on_b, "oconf-a").await, third);
}

/// A revocation is watched like any order and listed by `revocations` on every handle until its
/// `until` has passed.
pub async fn revocations_stand_everywhere_until_their_end(a: Arc<dyn Orders>, b: Arc<dyn Orders>) {
    let mut on_b = b.watch();
    let long = revocation("oconf-b", RevokeTarget::User("alice".into()), 600_000);
    let short = revocation("oconf-b", RevokeTarget::Jti("t-1".into()), 1_500);
    a.issue(Order::Revoke(long.clone())).await.unwrap();
    a.issue(Order::Revoke(short.clone())).await.unwrap();
    assert_eq!(next_order(&mut on_b, "oconf-b").await, Order::Revoke(long.clone()));
    assert_eq!(next_order(&mut on_b, "oconf-b").await, Order::Revoke(short.clone()));
    let mine = |list: Vec<Revocation>| {
        let mut l: Vec<_> = list.into_iter().filter(|r| r.account.as_str() == "oconf-b").collect();
        l.sort_by_key(|r| r.until_ms);
        l
    };
    for o in [&a, &b] {
        assert_eq!(mine(o.revocations().await.unwrap()), vec![short.clone(), long.clone()]);
    }
    // Wait out the short one's end (the clock, not the adapter, decides when).
    while now_ms() <= short.until_ms {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for o in [&a, &b] {
        assert_eq!(mine(o.revocations().await.unwrap()), vec![long.clone()]);
    }
}

/// A malformed order is `Invalid`, stands nowhere and reaches no watcher.
pub async fn an_invalid_order_is_refused_and_reaches_nobody(a: Arc<dyn Orders>, b: Arc<dyn Orders>) {
    let mut on_b = b.watch();
    let mut past = revocation("oconf-c", RevokeTarget::User("alice".into()), 1_000);
    past.until_ms = past.at_ms - 1;
    let bad = [Order::Revoke(past), disconnect("oconf-c", "", false)];
    for order in bad {
        let e = a.issue(order).await.expect_err("refused");
        assert!(matches!(e, OrdersError::Invalid(_)), "{e}");
    }
    assert!(a.revocations().await.unwrap().iter().all(|r| r.account.as_str() != "oconf-c"));
    let good = disconnect("oconf-c", "bob", true);
    a.issue(good.clone()).await.unwrap();
    assert_eq!(next_order(&mut on_b, "oconf-c").await, good, "the refused orders never arrived");
}
